"""An OpenAI Agents SDK ``Session`` whose items live in a chatstore server.

``ChatstoreSession`` implements the ``agents.memory.Session`` protocol over chatstore's HTTP
API (``/sessions/{id}/items``, ``/sessions/{id}/pop``):

- ``get_items(limit=None)``: an explicit ``limit`` wins; ``None`` falls back to
  ``session_settings.limit``; ``None`` there too means every item. The result is the latest
  ``limit`` items, oldest first. ``limit <= 0`` returns ``[]`` without a request (the rule of
  the SDK's ``SimpleListSession`` and ``RedisSession``; the server itself answers 400 to a
  negative limit). Limits above 2**63 - 1 are clamped to it.
- ``add_items(items)``: appends the batch atomically, in order. ``[]`` sends nothing. Each
  call sends one ``Idempotency-Key`` (a fresh uuid4) and retries connection failures and
  502/503/504 answers with the SAME key and byte-identical body, so a retry never adds the
  batch twice.
- ``pop_item()``: removes and returns the newest item, ``None`` when empty. Never retried: a
  pop whose answer was lost may already have removed an item, and repeating it would remove
  another.
- ``clear_session()``: removes every item. Retried like ``add_items`` (clearing is idempotent).
- ``get_items`` is retried too (it changes nothing).

Mutations (``add_items``, ``pop_item``, ``clear_session``) settle before a cancellation
propagates, like the SDK's built-in sessions: a cancelled caller still waits for the request
(and its retries) to finish, then re-raises ``CancelledError``.

Non-2xx answers raise :class:`~chatstore.errors.ChatstoreError` (with ``status_code``, the
server's ``code`` and ``message``); failures with no response, after retries, raise
:class:`~chatstore.errors.ChatstoreConnectionError`.
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import httpx
from agents.memory.session import _CompactionSnapshot
from agents.memory.session_settings import (
    SessionSettings,
    coerce_session_settings,
    resolve_session_limit,
)

from ._http import (
    OwnedClient,
    DEFAULT_TIMEOUT,
    TokenSource,
    json_body,
    path_segment,
    resolve_token,
    send,
    settle,
    unexpected,
)
from .errors import ChatstoreError

__all__ = ["ChatstoreSession", "DEFAULT_TIMEOUT"]

_MAX_LIMIT = 2**63 - 1
# The most items one snapshot request reads (the server's cap).
_SNAPSHOT_PAGE = 10_000


class ChatstoreSession(OwnedClient):
    """Agent session memory stored in chatstore, one conversation per ``session_id``.

    Args:
        session_id: Any non-empty string (up to 255 UTF-8 bytes, no NUL); it is
            percent-encoded into the URL path, so ``/``, ``%``, spaces and emoji are fine.
        base_url: The server's root URL, e.g. ``http://127.0.0.1:8080`` (a path prefix such as
            ``https://host/chatstore`` is kept).
        token: A bearer JWT, or a function (sync or async) returning one, called before every
            request, for tokens that are refreshed.
        session_settings: ``SessionSettings``, a dict such as ``{"limit": 20}`` (coerced the way
            the SDK's built-in sessions do; unknown keys are rejected) or ``None``
            (``SessionSettings()``).
        client: An ``httpx.AsyncClient`` to send requests with (connection pooling shared
            between sessions). It is never closed by this session. Without it the session
            creates its own, closed by :meth:`aclose`.
        timeout: Timeout for the session's own client (ignored when ``client`` is given).
        max_retries: How many times a retryable request is repeated after a connection error
            or a 502/503/504 answer (``0`` disables retries).
        retry_backoff: First retry delay in seconds; it doubles each retry (with jitter, at
            most 8 s). A ``Retry-After`` header (at most 30 s) wins when larger.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        *,
        base_url: str,
        token: TokenSource,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        retry_backoff: float = 0.25,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        if not base_url:
            raise ValueError("base_url is required")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )
        self._base_url = base_url.rstrip("/")
        self._token_source = token
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        self._use_client(client, timeout)
        encoded = path_segment(session_id)
        self._session_url = f"{self._base_url}/sessions/{encoded}"
        self._items_url = f"{self._session_url}/items"
        self._pop_url = f"{self._session_url}/pop"

    def __repr__(self) -> str:
        return f"ChatstoreSession(session_id={self.session_id!r}, base_url={self._base_url!r})"

    # -- lifecycle -------------------------------------------------------------------------

    # -- the Session protocol --------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The latest ``limit`` items, oldest first; every item when the limit resolves to None.

        An explicit ``limit`` wins over ``session_settings.limit``. ``limit <= 0`` gives ``[]``.
        """
        resolved = resolve_session_limit(limit, self.session_settings)
        params: dict[str, int] | None = None
        if resolved is not None:
            resolved = operator.index(resolved)
            if resolved <= 0:
                return []
            params = {"limit": min(resolved, _MAX_LIMIT)}
        response = await self._request("GET", self._items_url, params=params, retry=True)
        body = json_body(response)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise unexpected(response, 'expected {"items": [...]}')
        return items

    async def add_items(self, items: list[dict[str, Any]]) -> None:
        """Append ``items`` as one batch, in order; ``[]`` is a no-op (no request)."""
        if not items:
            return
        body = _encode_items(items)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        await settle(
            self._request("POST", self._items_url, content=body, headers=headers, retry=True)
        )

    async def pop_item(self) -> dict[str, Any] | None:
        """Remove and return the newest item, or ``None`` when the session is empty."""
        response = await settle(self._request("POST", self._pop_url, retry=False))
        body = json_body(response)
        if not isinstance(body, dict) or "item" not in body:
            raise unexpected(response, 'expected {"item": object | null}')
        item = body["item"]
        if item is not None and not isinstance(item, dict):
            raise unexpected(response, "expected the item to be an object or null")
        return item

    async def clear_session(self) -> None:
        """Remove every item of this session (an unknown session is fine)."""
        await settle(self._request("DELETE", self._items_url, retry=True))

    # -- the SDK's compaction hook ----------------------------------------------------------

    def _snapshot_branch(self) -> str | None:
        """The line a compaction snapshot reads and replaces: ``None`` is ``main``."""
        return None

    async def _read_snapshot(self, limit: int, after: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        branch = self._snapshot_branch()
        if branch is not None:
            params["branch"] = branch
        url = f"{self._session_url}/snapshot"
        response = await self._request("GET", url, params=params, retry=True)
        body = json_body(response)
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise unexpected(response, 'expected {"items": [...], "revision": n, ...}')
        return body

    async def _get_compaction_snapshot(
        self,
        limit: int,
        *,
        prune_prefix: Callable[[dict[str, Any]], bool] | None = None,
    ) -> _CompactionSnapshot | None:
        """The SDK's private compaction hook, as ``SQLiteSession`` implements it.

        Reads the latest ``limit`` items with the session's revision. ``replace_suffix(start,
        items)`` then replaces the read items from ``start`` on by ``items`` in one atomic
        server step, only if the session did not change since the read (else it answers
        ``False`` and nothing changed). With ``prune_prefix``, the same step also removes the
        leading run of items the predicate accepts (before the replaced part): the predicate
        runs here, on the items read from the start, and the server is told how many.
        """
        limit = max(1, min(operator.index(limit), _SNAPSHOT_PAGE))
        snap = await self._read_snapshot(limit)
        items: list[dict[str, Any]] = snap["items"]
        revision = snap["revision"]
        base = snap["position_base"]
        first = snap["first_position"]
        complete = first is None or first == base + 1
        branch = self._snapshot_branch()

        async def count_prefix(before: int) -> int | None:
            """How many leading items (at positions up to ``before``) the predicate accepts;
            ``None`` if the session changed meanwhile."""
            assert prune_prefix is not None
            accepted = 0
            position = base
            while position < before:
                page = await self._read_snapshot(_SNAPSHOT_PAGE, after=position)
                if page["revision"] != revision:
                    return None
                if not page["items"]:
                    break
                for offset, item in enumerate(page["items"]):
                    if page["first_position"] + offset > before or not prune_prefix(item):
                        return accepted
                    accepted += 1
                position = page["first_position"] + len(page["items"]) - 1
            return accepted

        async def replace_suffix(start: int, output: list[dict[str, Any]]) -> bool:
            if first is None or not items[start:]:
                return False
            after = first + start - 1
            prune = 0
            if prune_prefix is not None:
                counted = await count_prefix(after)
                if counted is None:
                    return False
                prune = counted
            body: dict[str, Any] = {
                "revision": revision,
                "after_position": after,
                "prune_leading": prune,
                "items": list(output),
            }
            if branch is not None:
                body["branch"] = branch
            content = _encode_body(body)
            # Not retried: a replace whose answer was lost may have happened, and its repeat
            # would answer 409.
            try:
                await settle(
                    self._request(
                        "POST",
                        f"{self._session_url}/replace",
                        content=content,
                        headers={"Content-Type": "application/json"},
                        retry=False,
                    )
                )
            except ChatstoreError as exc:
                if exc.status_code == 409:
                    return False
                raise
            return True

        return _CompactionSnapshot(items, complete, replace_suffix)

    # -- HTTP ------------------------------------------------------------------------------

    async def _token(self) -> str:
        return await resolve_token(self._token_source)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool,
    ) -> httpx.Response:
        return await send(
            self._client,
            method,
            url,
            token=self._token,
            retry=retry,
            max_retries=self._max_retries,
            retry_backoff=self._retry_backoff,
            params=params,
            content=content,
            headers=headers,
        )


def _encode_body(body: Mapping[str, Any]) -> bytes:
    """A JSON request body whose ``items`` are checked to be objects."""
    batch = _checked_items(body["items"])
    try:
        text = json.dumps(
            {**body, "items": batch}, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            "items contain a lone surrogate, which is not valid JSON text for chatstore"
        ) from exc


def _checked_items(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    batch = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(
                f"items[{index}] must be a dict (a JSON object), not {type(item).__name__}"
            )
        batch.append(item if isinstance(item, dict) else dict(item))
    return batch


def _encode_items(items: Sequence[Mapping[str, Any]]) -> bytes:
    """The request body, encoded once so that every retry sends the same bytes."""
    batch = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(
                f"items[{index}] must be a dict (a JSON object), not {type(item).__name__}"
            )
        batch.append(item if isinstance(item, dict) else dict(item))
    try:
        text = json.dumps(
            {"items": batch}, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            "items contain a lone surrogate, which is not valid JSON text for chatstore"
        ) from exc
