"""Helpers for the ChatKit tests: a request context, a ChatKitServer with a scripted responder,
SSE decoding, the Rust server's own ``POST /chatkit``, and a strict JSON diff."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    HiddenContextItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTextContent,
)


@dataclass(frozen=True)
class Ctx:
    """The per-request context a multi-tenant ChatKit server builds from its own auth."""

    user: str


ALICE = Ctx("alice")
BOB = Ctx("bob")


def user_text(message: UserMessageItem | None) -> str:
    if message is None:
        return ""
    return "".join(c.text for c in message.content if isinstance(c, UserMessageTextContent))


async def stream_assistant_message(
    store: Any, thread: ThreadMetadata, pieces: list[str], context: Ctx
) -> AsyncIterator[ThreadStreamEvent]:
    """The events of one assistant message streamed piece by piece, as responders send them:
    added, content part added, a text delta per piece, content part done, done."""
    item = AssistantMessageItem(
        id=store.generate_item_id("message", thread, context),
        thread_id=thread.id,
        created_at=datetime.now(),
        content=[],
    )
    yield ThreadItemAddedEvent(item=item)
    yield ThreadItemUpdatedEvent(
        item_id=item.id,
        update=AssistantMessageContentPartAdded(
            content_index=0, content=AssistantMessageContent(text="")
        ),
    )
    for delta in pieces:
        yield ThreadItemUpdatedEvent(
            item_id=item.id,
            update=AssistantMessageContentPartTextDelta(content_index=0, delta=delta),
        )
    final = AssistantMessageContent(text="".join(pieces))
    yield ThreadItemUpdatedEvent(
        item_id=item.id,
        update=AssistantMessageContentPartDone(content_index=0, content=final),
    )
    yield ThreadItemDoneEvent(item=item.model_copy(update={"content": [final]}))


class EchoServer(ChatKitServer[Ctx]):
    """Answers every user message with a streamed assistant message ``You said: <text>``.

    With ``hidden=True`` it also stores a hidden-context item after the answer (persisted,
    never sent). A thread without a title gets the first message's text as its title.
    """

    def __init__(self, *args: Any, hidden: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden = hidden

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: Ctx
    ) -> AsyncIterator[ThreadStreamEvent]:
        text = user_text(input_user_message)
        async for event in stream_assistant_message(
            self.store, thread, ["You said: ", text], context
        ):
            yield event
        if self.hidden:
            yield ThreadItemDoneEvent(
                item=HiddenContextItem(
                    id=self.store.generate_item_id("message", thread, context),
                    thread_id=thread.id,
                    created_at=datetime.now(),
                    content={"answered": text},
                )
            )
        if thread.title is None:
            thread.title = text[:40]


def user_input(text: str, attachments: list[str] | None = None) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments or [],
        "inference_options": {},
    }


async def process_json(server: ChatKitServer[Ctx], request: dict[str, Any], context: Ctx) -> Any:
    """A non-streaming request through the Python SDK's ``process()``, its JSON parsed."""
    result = await server.process(json.dumps(request), context)
    assert isinstance(result, NonStreamingResult), result
    return json.loads(result.json)


async def process_stream(
    server: ChatKitServer[Ctx], request: dict[str, Any], context: Ctx
) -> list[dict[str, Any]]:
    """A streaming request through ``process()``: its SSE frames, checked and decoded."""
    result = await server.process(json.dumps(request), context)
    assert isinstance(result, StreamingResult), result
    body = b"".join([chunk async for chunk in result])
    return decode_sse(body)


def decode_sse(body: bytes) -> list[dict[str, Any]]:
    """``data: <compact json>\\n\\n`` frames, nothing else (an empty stream has none)."""
    if not body:
        return []
    assert body.endswith(b"\n\n"), body[-200:]
    events = []
    for frame in body[:-2].split(b"\n\n"):
        assert frame.startswith(b"data: "), frame
        payload = frame[len(b"data: ") :]
        assert b"\n" not in payload, frame
        events.append(json.loads(payload))
    return events


def rust_chatkit(server: Any, request: dict[str, Any], user: str = "alice") -> httpx.Response:
    """The same request to the Rust server's own ``POST /chatkit``."""
    return server.request(
        "POST",
        "/chatkit",
        user=user,
        content=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )


def json_diff(left: Any, right: Any, path: str = "$") -> list[str]:
    """Every difference between two parsed JSON values, as ``path: left != right``. Types are
    strict (``1`` differs from ``1.0``, ``True`` from ``1``); key order is not compared."""
    if type(left) is not type(right):
        return [f"{path}: {left!r} ({type(left).__name__}) != {right!r} ({type(right).__name__})"]
    if isinstance(left, dict):
        diffs = []
        for key in sorted(left.keys() | right.keys()):
            where = f"{path}.{key}"
            if key not in right:
                diffs.append(f"{where}: only in the first ({left[key]!r})")
            elif key not in left:
                diffs.append(f"{where}: only in the second ({right[key]!r})")
            else:
                diffs.extend(json_diff(left[key], right[key], where))
        return diffs
    if isinstance(left, list):
        diffs = []
        if len(left) != len(right):
            diffs.append(f"{path}: {len(left)} elements != {len(right)} elements")
        for index, (a, b) in enumerate(zip(left, right, strict=False)):
            diffs.extend(json_diff(a, b, f"{path}[{index}]"))
        return diffs
    if left != right or (isinstance(left, float) and str(left) != str(right)):
        return [f"{path}: {left!r} != {right!r}"]
    return []
