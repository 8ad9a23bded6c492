"""A ChatKit ``Store`` and ``AttachmentStore`` whose data lives in a chatstore server.

:class:`ChatstoreStore` implements every method of ``chatkit.store.Store`` (openai-chatkit
1.6.x) over chatstore's ChatKit store routes (``/threads``, ``/threads/{id}/items``,
``/attachments/{id}``); :class:`ChatstoreAttachmentStore` implements
``chatkit.store.AttachmentStore`` over ``POST /chatkit`` (``attachments.create``, which hands
out an upload URL signed by the server) and ``DELETE /attachments/{id}``.

Objects go out as ChatKit's stored form (``model_dump(mode="json")``) and come back parsed
with the SDK's own models and type adapters. Every method takes the ChatKit request
``context``; with ``token_for`` each request runs as the user that context names, so one
``ChatKitServer`` can serve many users, each in their own namespace on the server.

SDK semantics kept (see ``chatkit.store``):

- ``load_thread``, ``load_item`` and ``load_attachment`` raise ``chatkit.store.NotFoundError``
  for a missing object (or another user's: the server does not tell them apart).
- ``load_thread_items`` of a missing (or another user's) thread is an empty ``Page``.
- ``add_thread_item`` and ``save_item`` on a missing thread raise ``NotFoundError``.
- Writes are upserts (``add_thread_item`` is idempotent by item id); deletes of missing
  objects are no-ops.
- Pages: ``after`` is the exclusive cursor (the id of the previous page's last element, in
  the same order); the returned ``Page.after`` is the last id when ``has_more``, else
  ``None``. Limits above the server's page size (100) are served by following its pages.
- Ids made client-side carry 128 random bits with the SDK's prefixes (``thr_``, ``msg_``,
  ``tc_``, ``wf_``, ``tsk_``, ``atc_``, ``shcx_``) instead of the SDK's 32.

Reads, upserts and deletes are retried on connection errors and 502/503/504 (they are
idempotent); ``attachments.create`` is not (a retry could create a second attachment).
Writes settle before a cancellation propagates, so a cancelled ChatKit stream never leaves a
write half-known. Other failures raise :class:`~chatstore.errors.ChatstoreError`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from chatkit.store import AttachmentStore, NotFoundError, Store, StoreItemType, TContext
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    Page,
    Thread,
    ThreadItem,
    ThreadMetadata,
)
from pydantic import TypeAdapter

from ._http import (
    DEFAULT_TIMEOUT,
    OwnedClient,
    TokenSource,
    call_token,
    path_segment,
    resolve_token,
    send,
    settle,
    unexpected,
)
from .errors import ChatstoreError

__all__ = ["ChatstoreAttachmentStore", "ChatstoreStore", "TokenFor", "generate_id"]

#: Maps a ChatKit request context to the bearer token of its user (sync or async).
TokenFor = Callable[[Any], str | Awaitable[str]]

#: The largest page the server's store routes answer; bigger limits follow several pages.
SERVER_PAGE_LIMIT = 100

_ID_PREFIXES: dict[str, str] = {
    "thread": "thr",
    "message": "msg",
    "tool_call": "tc",
    "workflow": "wf",
    "task": "tsk",
    "attachment": "atc",
    "sdk_hidden_context": "shcx",
}

_THREAD = TypeAdapter(ThreadMetadata)
_ITEM: TypeAdapter[Any] = TypeAdapter(ThreadItem)
_ATTACHMENT: TypeAdapter[Any] = TypeAdapter(Attachment)
_THREAD_PAGE = TypeAdapter(Page[ThreadMetadata])
_ITEM_PAGE = TypeAdapter(Page[ThreadItem])


def generate_id(item_type: StoreItemType | str) -> str:
    """``<prefix>_<32 hex digits>``: the SDK's prefix for ``item_type`` and 128 random bits."""
    prefix = _ID_PREFIXES.get(item_type, item_type)
    return f"{prefix}_{uuid.uuid4().hex}"


def _encode(body: Any) -> bytes:
    """A JSON body, encoded once so that every retry sends the same bytes."""
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"not valid JSON for chatstore: {exc}") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("the object contains a lone surrogate, which is not valid JSON") from exc


def _is_not_found(error: ChatstoreError) -> bool:
    return error.status_code == 404


class _ChatstoreClient(OwnedClient):
    """Connection, identity and retry settings shared by the store classes."""

    def __init__(
        self,
        base_url: str,
        *,
        token: TokenSource | None = None,
        token_for: TokenFor | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        retry_backoff: float = 0.25,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        if (token is None) == (token_for is None):
            raise ValueError("give exactly one of token= and token_for=")
        if token_for is not None and not callable(token_for):
            raise TypeError("token_for must be a function of the request context")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._base_url = base_url.rstrip("/")
        self._token_source = token
        self._token_for = token_for
        self._max_retries = max_retries
        self._retry_backoff = retry_backoff
        self._timeout = timeout
        self._use_client(client, timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        return self._base_url

    # -- lifecycle -------------------------------------------------------------------------

    # -- HTTP ------------------------------------------------------------------------------

    async def token_of(self, context: Any) -> str:
        """The bearer token requests for ``context`` are sent with."""
        if self._token_for is not None:
            return await call_token(self._token_for, context)
        assert self._token_source is not None
        return await resolve_token(self._token_source)

    def _url(self, *segments: str) -> str:
        return self._base_url + "".join("/" + path_segment(s) for s in segments)

    async def _request(
        self,
        method: str,
        url: str,
        context: Any,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        retry: bool = True,
    ) -> httpx.Response:
        content = None
        headers = None
        if body is not None:
            content = _encode(body)
            headers = {"Content-Type": "application/json"}

        async def token() -> str:
            return await self.token_of(context)

        request = send(
            self._client,
            method,
            url,
            token=token,
            retry=retry,
            max_retries=self._max_retries,
            retry_backoff=self._retry_backoff,
            params=params,
            content=content,
            headers=headers,
        )
        if method == "GET":
            return await request
        return await settle(request)

    def _settings(self) -> dict[str, Any]:
        """Constructor arguments for a sibling object sharing this one's client and identity."""
        return {
            "token": self._token_source,
            "token_for": self._token_for,
            "client": self._client,
            "max_retries": self._max_retries,
            "retry_backoff": self._retry_backoff,
        }


class ChatstoreStore(_ChatstoreClient, Store[TContext]):
    """``chatkit.store.Store`` over a chatstore server.

    Args:
        base_url: The server's root URL, e.g. ``http://127.0.0.1:8080`` (a path prefix is kept).
        token: A bearer JWT (or a sync/async function of no arguments returning one) used for
            every request: a single-user store.
        token_for: Instead of ``token``: a sync or async function mapping each request's
            ChatKit ``context`` to its user's bearer JWT, called before every HTTP request.
        client: An ``httpx.AsyncClient`` to share; never closed by the store. Without it the
            store creates its own, closed by :meth:`aclose`.
        timeout: Timeout of the store's own client (ignored when ``client`` is given).
        max_retries: Retries of idempotent requests after connection errors or 502/503/504.
        retry_backoff: First retry delay in seconds (doubling, with jitter, at most 8 s;
            ``Retry-After`` honoured up to 30 s).
    """

    # -- ids -------------------------------------------------------------------------------

    def generate_thread_id(self, context: TContext) -> str:
        return generate_id("thread")

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: TContext
    ) -> str:
        return generate_id(item_type)

    def attachment_store(self) -> ChatstoreAttachmentStore[TContext]:
        """A :class:`ChatstoreAttachmentStore` for the same server, sharing this store's HTTP
        client, identity (``token``/``token_for``) and retry settings."""
        return ChatstoreAttachmentStore(self._base_url, **self._settings())

    # -- threads ---------------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: TContext) -> ThreadMetadata:
        try:
            response = await self._request("GET", self._url("threads", thread_id), context)
        except ChatstoreError as exc:
            if _is_not_found(exc):
                raise NotFoundError(f"Thread {thread_id} not found") from exc
            raise
        return _THREAD.validate_json(response.content)

    async def save_thread(self, thread: ThreadMetadata, context: TContext) -> None:
        # The SDK sometimes passes a whole Thread; its items are stored through the item calls.
        body = thread.model_dump(
            mode="json", exclude={"items"} if isinstance(thread, Thread) else None
        )
        await self._request("PUT", self._url("threads", thread.id), context, body=body)

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: TContext
    ) -> Page[ThreadMetadata]:
        return await self._page(self._url("threads"), _THREAD_PAGE, limit, after, order, context)

    async def delete_thread(self, thread_id: str, context: TContext) -> None:
        await self._request("DELETE", self._url("threads", thread_id), context)

    # -- thread items ----------------------------------------------------------------------

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: TContext,
    ) -> Page[ThreadItem]:
        url = self._url("threads", thread_id, "items")
        try:
            return await self._page(url, _ITEM_PAGE, limit, after, order, context)
        except ChatstoreError as exc:
            if _is_not_found(exc):  # a missing (or another user's) thread: an empty page
                return Page()
            raise

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        url = self._url("threads", thread_id, "items")
        await self._write_item("POST", url, thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        url = self._url("threads", thread_id, "items", item.id)
        await self._write_item("PUT", url, thread_id, item, context)

    async def load_item(self, thread_id: str, item_id: str, context: TContext) -> ThreadItem:
        try:
            response = await self._request(
                "GET", self._url("threads", thread_id, "items", item_id), context
            )
        except ChatstoreError as exc:
            if _is_not_found(exc):
                raise NotFoundError(f"Item {item_id} not found in thread {thread_id}") from exc
            raise
        return _ITEM.validate_json(response.content)

    async def delete_thread_item(self, thread_id: str, item_id: str, context: TContext) -> None:
        await self._request("DELETE", self._url("threads", thread_id, "items", item_id), context)

    async def _write_item(
        self, method: str, url: str, thread_id: str, item: ThreadItem, context: TContext
    ) -> None:
        body = item.model_dump(mode="json")
        try:
            await self._request(method, url, context, body=body)
        except ChatstoreError as exc:
            if _is_not_found(exc):
                raise NotFoundError(f"Thread {thread_id} not found") from exc
            raise

    # -- attachments -----------------------------------------------------------------------

    async def save_attachment(self, attachment: Attachment, context: TContext) -> None:
        body = attachment.model_dump(mode="json")
        await self._request("PUT", self._url("attachments", attachment.id), context, body=body)

    async def load_attachment(self, attachment_id: str, context: TContext) -> Attachment:
        try:
            response = await self._request("GET", self._url("attachments", attachment_id), context)
        except ChatstoreError as exc:
            if _is_not_found(exc):
                raise NotFoundError(f"Attachment {attachment_id} not found") from exc
            raise
        return _ATTACHMENT.validate_json(response.content)

    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        await self._request("DELETE", self._url("attachments", attachment_id), context)

    # -- paging ----------------------------------------------------------------------------

    async def _page(
        self,
        url: str,
        adapter: TypeAdapter[Any],
        limit: int,
        after: str | None,
        order: str,
        context: TContext,
    ) -> Any:
        """One SDK page of up to ``limit`` elements, from as many server pages as it takes."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        data: list[Any] = []
        cursor = after or None
        while True:
            params: dict[str, Any] = {
                "limit": min(limit - len(data), SERVER_PAGE_LIMIT),
                "order": order,
            }
            if cursor is not None:
                params["after"] = cursor
            response = await self._request("GET", url, context, params=params)
            page = adapter.validate_json(response.content)
            if not data and len(page.data) >= limit:
                return page  # the usual case: one request
            data.extend(page.data)
            if not page.has_more or len(data) >= limit:
                break
            if not page.after or not page.data:
                raise unexpected(response, "has_more without an `after` cursor")
            cursor = page.after
        return type(page)(data=data, has_more=page.has_more, after=page.after)


class ChatstoreAttachmentStore(_ChatstoreClient, AttachmentStore[TContext]):
    """``chatkit.store.AttachmentStore`` over a chatstore server (two-phase upload).

    ``create_attachment`` asks the server (``POST /chatkit`` ``attachments.create``) for the
    attachment: its ``upload_descriptor`` is a ``PUT`` URL to the server's own content route,
    signed for this user, so a browser uploads the bytes there without a token; an image also
    gets a signed ``preview_url``. The server stores that metadata itself (the SDK then saves
    it again through ``Store.save_attachment``). ``delete_attachment`` deletes the metadata
    and the uploaded bytes (``DELETE /attachments/{id}``).

    Same constructor as :class:`ChatstoreStore` (or use :meth:`ChatstoreStore.attachment_store`).
    """

    def generate_attachment_id(self, mime_type: str, context: TContext) -> str:
        # create_attachment takes the id the server generates; this is for other callers.
        return generate_id("attachment")

    async def create_attachment(
        self, input: AttachmentCreateParams, context: TContext
    ) -> Attachment:
        body = {
            "type": "attachments.create",
            "params": input.model_dump(mode="json"),
            "metadata": {},
        }
        response = await self._request(
            "POST", self._url("chatkit"), context, body=body, retry=False
        )
        return _ATTACHMENT.validate_json(response.content)

    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        await self._request("DELETE", self._url("attachments", attachment_id), context)
