"""``ChatstoreAdvancedSession``: the public API of the SDK's ``AdvancedSQLiteSession`` (0.24)
over chatstore, so branches, turns and usage live on the server and every process sees them.

Same method names, arguments, return shapes and exceptions as ``AdvancedSQLiteSession``:
``ValueError`` for a turn that does not exist, a blank or already used branch name, a
missing branch, deleting ``main`` or the current branch without ``force``. A turn starts at
each user message. Which branch is current is this instance's state, as in the SDK: a new
instance starts on ``main``. ``main`` is the session of ``ChatstoreSession`` and the plain
routes; the other branches share main's history up to their fork point without copying it.

Known differences: timestamps are the server's ISO 8601 strings; popping the last item of a
turn keeps that turn's stored usage; a clear by another instance does not move this one back
to ``main`` (it finds its branch empty).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from agents.extensions.memory.advanced_sqlite_session import (
    AdvancedSQLiteSession,
    _content_preview,
)

from ._http import json_body, path_segment, settle
from .errors import ChatstoreError
from .session import ChatstoreSession, _encode_items

__all__ = ["ChatstoreAdvancedSession"]

_logger = logging.getLogger("chatstore.advanced")

# The item types `AdvancedSQLiteSession.get_tool_usage` counts as tool calls.
_TOOL_CALL_TYPES = {
    "tool_call",
    "function_call",
    "computer_call",
    "file_search_call",
    "web_search_call",
    "code_interpreter_call",
    "tool_search_call",
    "custom_tool_call",
    "mcp_call",
    "mcp_approval_request",
    "shell_call",
    "apply_patch_call",
}


class ChatstoreAdvancedSession(ChatstoreSession):
    """Branches, turns and usage on a chatstore server; constructor as ``ChatstoreSession``."""

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        super().__init__(session_id, **kwargs)
        self._current_branch_id = "main"

    def __repr__(self) -> str:
        return (
            f"ChatstoreAdvancedSession(session_id={self.session_id!r}, "
            f"base_url={self._base_url!r}, branch={self._current_branch_id!r})"
        )

    # -- helpers ---------------------------------------------------------------------------

    def _snapshot_branch(self) -> str | None:
        return None if self._current_branch_id == "main" else self._current_branch_id

    def _branch_url(self, branch_id: str) -> str:
        return f"{self._session_url}/branches/{path_segment(branch_id)}"

    async def _json(
        self, method: str, url: str, *, body: Any = None, params: Any = None, retry: bool = True
    ) -> Any:
        content = None if body is None else json.dumps(body).encode("utf-8")
        headers = None if body is None else {"Content-Type": "application/json"}
        request = self._request(
            method, url, params=params, content=content, headers=headers, retry=retry
        )
        response = await (settle(request) if method != "GET" else request)
        return json_body(response) if response.content else None

    # -- the Session protocol, per branch --------------------------------------------------

    async def get_items(
        self, limit: int | None = None, branch_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Items of ``branch_id`` (the current branch by default), the latest ``limit``."""
        branch = branch_id if branch_id is not None else self._current_branch_id
        if branch == "main":
            return await super().get_items(limit)
        from agents.memory.session_settings import resolve_session_limit

        resolved = resolve_session_limit(limit, self.session_settings)
        params = None
        if resolved is not None:
            if resolved == 0:
                return []
            if resolved > 0:
                params = {"limit": resolved}
        try:
            body = await self._json("GET", f"{self._branch_url(branch)}/items", params=params)
        except ChatstoreError as exc:
            if exc.status_code == 404:
                return []
            raise
        return body["items"]

    async def add_items(self, items: list[dict[str, Any]]) -> None:
        """Appends to the current branch."""
        if self._current_branch_id == "main":
            return await super().add_items(items)
        if not items:
            return
        await settle(
            self._request(
                "POST",
                f"{self._branch_url(self._current_branch_id)}/items",
                content=_encode_items(items),
                headers={"Content-Type": "application/json"},
                retry=False,
            )
        )

    async def pop_item(self) -> dict[str, Any] | None:
        """Removes and returns the current branch's newest item."""
        if self._current_branch_id == "main":
            return await super().pop_item()
        body = await self._json("POST", f"{self._branch_url(self._current_branch_id)}/pop",
                                retry=False)
        return body["item"]

    async def clear_session(self) -> None:
        """Removes every item of every branch and all usage; back on ``main``. Branch names
        stay reserved."""
        await self._json("DELETE", f"{self._session_url}/memory")
        self._current_branch_id = "main"

    # -- usage -----------------------------------------------------------------------------

    async def store_run_usage(self, result: Any) -> None:
        """Stores ``result.context_wrapper.usage`` as the current turn's usage. Failures are
        logged, not raised, as in the SDK."""
        try:
            usage = result.context_wrapper.usage
            if usage is None:
                return

            def details(value: Any) -> Any:
                return dict(value.__dict__) if value else None

            body = {
                "branch": self._current_branch_id,
                "requests": usage.requests or 0,
                "input_tokens": usage.input_tokens or 0,
                "output_tokens": usage.output_tokens or 0,
                "total_tokens": usage.total_tokens or 0,
                "input_tokens_details": details(getattr(usage, "input_tokens_details", None)),
                "output_tokens_details": details(getattr(usage, "output_tokens_details", None)),
            }
            await self._json("PUT", f"{self._session_url}/usage", body=body, retry=False)
        except Exception as exc:  # noqa: BLE001 - the SDK logs usage failures and goes on
            _logger.error("Failed to store session usage: %s", exc)

    async def get_session_usage(self, branch_id: str | None = None) -> dict[str, int] | None:
        """Usage added up over every branch (or ``branch_id``); ``None`` when none stored."""
        params = {"branch": branch_id} if branch_id else None
        body = await self._json("GET", f"{self._session_url}/usage", params=params)
        return body["usage"]

    async def get_turn_usage(
        self, user_turn_number: int | None = None, branch_id: str | None = None
    ) -> list[dict[str, Any]] | dict[str, Any]:
        """Each turn's usage (a list), or one turn's (a dict, ``{}`` when none)."""
        params: dict[str, Any] = {"branch": branch_id or self._current_branch_id}
        if user_turn_number is not None:
            params["turn"] = user_turn_number
        body = await self._json("GET", f"{self._session_url}/usage/turns", params=params)
        turns = body["turns"]
        if user_turn_number is None:
            return turns
        if not turns:
            return {}
        one = dict(turns[0])
        one.pop("user_turn_number", None)
        return one

    # -- branches --------------------------------------------------------------------------

    async def create_branch_from_turn(
        self, turn_number: int, branch_name: str | None = None
    ) -> str:
        """Forks the current branch before its turn ``turn_number`` and switches to it."""
        if branch_name is not None and not branch_name.strip():
            raise ValueError("Branch name cannot be empty")
        source = self._current_branch_id
        generated = branch_name is None
        base = branch_name or f"branch_from_turn_{turn_number}_{int(time.time())}"
        name, suffix = base, 1
        while True:
            body = {"branch_id": name, "turn": turn_number, "from_branch": source}
            try:
                await self._json(
                    "POST", f"{self._session_url}/branches", body=body, retry=False
                )
                break
            except ChatstoreError as exc:
                if exc.status_code == 409 and generated:
                    suffix += 1
                    name = f"{base}_{suffix}"
                    continue
                if exc.status_code == 409:
                    raise ValueError(
                        f"Branch ID '{name}' has already been used. Choose a new branch ID."
                    ) from None
                if exc.status_code in (400, 404):
                    raise ValueError(
                        f"Turn {turn_number} does not contain a user message "
                        f"in branch '{source}'"
                    ) from None
                raise
        self._current_branch_id = name
        return name

    async def create_branch_from_content(
        self, search_term: str, branch_name: str | None = None
    ) -> str:
        """Forks before the first user turn containing ``search_term``."""
        matching = await self.find_turns_by_content(search_term)
        if not matching:
            raise ValueError(f"No user turns found containing '{search_term}'")
        return await self.create_branch_from_turn(matching[0]["turn"], branch_name)

    async def switch_to_branch(self, branch_id: str) -> None:
        """Makes ``branch_id`` current (this instance only)."""
        if not any(branch["branch_id"] == branch_id for branch in await self.list_branches()):
            raise ValueError(f"Branch '{branch_id}' does not exist")
        self._current_branch_id = branch_id

    async def delete_branch(self, branch_id: str, force: bool = False) -> None:
        """Deletes a branch and its usage; its name stays reserved."""
        if not branch_id or not branch_id.strip():
            raise ValueError("Branch ID cannot be empty")
        if branch_id == "main":
            raise ValueError("Cannot delete the 'main' branch")
        listed = any(b["branch_id"] == branch_id for b in await self.list_branches())
        if branch_id == self._current_branch_id:
            if not force:
                raise ValueError(
                    f"Cannot delete current branch '{branch_id}'. "
                    "Use force=True or switch branches first"
                )
            if not listed:
                raise ValueError(f"Branch '{branch_id}' does not exist")
            await self.switch_to_branch("main")
        if not listed:
            raise ValueError(f"Branch '{branch_id}' does not exist")
        try:
            await self._json("DELETE", self._branch_url(branch_id), retry=False)
        except ChatstoreError as exc:
            if exc.status_code == 404:
                raise ValueError(f"Branch '{branch_id}' does not exist") from None
            raise

    async def list_branches(self) -> list[dict[str, Any]]:
        """``[{branch_id, message_count, user_turns, is_current, created_at}]``, oldest first;
        as in the SDK, a branch without
        items is not listed."""
        body = await self._json("GET", f"{self._session_url}/branches")
        return [
            {
                "branch_id": branch["branch_id"],
                "message_count": branch["message_count"],
                "user_turns": branch["user_turns"],
                "is_current": branch["branch_id"] == self._current_branch_id,
                "created_at": branch["created_at"],
            }
            for branch in body["branches"]
            if branch["message_count"] > 0
        ]

    # -- turns -----------------------------------------------------------------------------

    async def _turns(self, branch_id: str | None, search_term: str | None) -> list[Any]:
        params: dict[str, Any] = {"branch": branch_id or self._current_branch_id}
        if search_term:
            params["q"] = search_term
        try:
            body = await self._json("GET", f"{self._session_url}/turns", params=params)
        except ChatstoreError as exc:
            if exc.status_code == 404:
                return []
            raise
        if not isinstance(body, dict) or not isinstance(body.get("turns"), list):
            raise ChatstoreError("expected {\"turns\": [...]}")
        return body["turns"]

    async def get_conversation_turns(self, branch_id: str | None = None) -> list[dict[str, Any]]:
        """``[{turn, content (first 100 characters), full_content, timestamp, can_branch}]``."""
        return [
            {
                "turn": turn["turn"],
                "content": _content_preview(turn["content"], 100),
                "full_content": turn["content"],
                "timestamp": turn["created_at"],
                "can_branch": True,
            }
            for turn in await self._turns(branch_id, None)
        ]

    async def find_turns_by_content(
        self, search_term: str, branch_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The user turns whose text contains ``search_term`` (ASCII case-insensitive)."""
        return [
            {
                "turn": turn["turn"],
                "content": _content_preview(turn["content"]),
                "full_content": turn["content"],
                "timestamp": turn["created_at"],
                "can_branch": True,
            }
            for turn in await self._turns(branch_id, search_term)
        ]

    async def _structure(self, branch_id: str | None) -> list[tuple[int, str, str | None]]:
        """``(turn, message type, tool name)`` per item, classified as the SDK does."""
        structure = []
        turn = 0
        for item in await self.get_items(branch_id=branch_id or self._current_branch_id):
            if isinstance(item, dict) and item.get("role") == "user":
                turn += 1
            message_type = AdvancedSQLiteSession._classify_message_type(self, item)  # type: ignore[arg-type]
            tool_name = AdvancedSQLiteSession._extract_tool_name(self, item)  # type: ignore[arg-type]
            structure.append((turn, message_type, tool_name))
        return structure

    async def get_conversation_by_turns(
        self, branch_id: str | None = None
    ) -> dict[int, list[dict[str, str | None]]]:
        """Turn number -> ``[{type, tool_name}]`` of its items."""
        turns: dict[int, list[dict[str, str | None]]] = {}
        for turn, message_type, tool_name in await self._structure(branch_id):
            turns.setdefault(turn, []).append({"type": message_type, "tool_name": tool_name})
        return turns

    async def get_tool_usage(self, branch_id: str | None = None) -> list[tuple[str, int, int]]:
        """``(tool_name, count, turn)`` per tool and turn, by turn."""
        structure = await self._structure(branch_id)
        counts: dict[tuple[Any, int], int] = {}
        searched = {
            (turn, name) for turn, kind, name in structure if kind == "tool_search_call"
        }
        for turn, kind, name in structure:
            if kind in _TOOL_CALL_TYPES:
                key_name = name if name is not None else (
                    kind if kind in ("shell_call", "apply_patch_call") else None
                )
            elif kind == "tool_search_output" and (turn, name) not in searched:
                key_name = name
            else:
                continue
            counts[(key_name, turn)] = counts.get((key_name, turn), 0) + 1
        ordered = sorted(counts.items(), key=lambda entry: (entry[0][1], str(entry[0][0])))
        return [(name, count, turn) for (name, turn), count in ordered]

