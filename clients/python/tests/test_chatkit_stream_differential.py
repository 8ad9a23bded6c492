"""Streaming differential test: the Python SDK's ``ChatKitServer.process()`` and the Rust
server's ``POST /chatkit`` answer the same streaming request over the same stored thread, and
must send the same events and leave the same items behind.

The Python side runs ``MirrorServer``, a ``ChatKitServer`` whose ``respond()`` and ``action()``
say exactly what the Rust server's ``echo`` responder says (the user's words, one text delta per
word; widget actions named), over ``ChatstoreStore`` on the same chatstore server. Each side gets
its own copy of the seeded thread. Generated ids and timestamps differ by nature, so they are
replaced by placeholders in order of appearance before comparing; everything else is compared
strictly. A request the SDK fails after the stream started (its ``ValueError``s) must be a 4xx
before any stream on the Rust side.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from chatkit.server import ChatKitServer
from chatkit.types import (
    Action,
    ThreadItem,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    WidgetItem,
)
from chatkit_support import (
    ALICE,
    Ctx,
    decode_sse,
    json_diff,
    process_stream,
    rust_chatkit,
    stream_assistant_message,
    user_input,
)
from chatkit_support import user_text as sdk_user_text
from pydantic import TypeAdapter

ITEM = TypeAdapter(ThreadItem)
BASE = datetime(2025, 10, 6, 12, 0, 0)


def words(text: str) -> list[str]:
    """The Rust echo's pieces: each word with the space that follows it."""
    return re.findall(r"[^ ]* |[^ ]+$", text)


class MirrorServer(ChatKitServer[Ctx]):
    """Says what the Rust ``echo`` responder says."""

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: Ctx
    ) -> AsyncIterator[ThreadStreamEvent]:
        if input_user_message is None:
            return
        text = sdk_user_text(input_user_message)
        async for event in stream_assistant_message(self.store, thread, words(text), context):
            yield event
        if thread.title is None and text.strip():
            thread.title = text.strip()[:60]

    async def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: Ctx,
    ) -> AsyncIterator[ThreadStreamEvent]:
        said = f"Action {action.type}"
        if action.payload is not None:
            said += " " + json.dumps(action.payload, separators=(",", ":"))
        async for event in stream_assistant_message(self.store, thread, words(said), context):
            yield event


# -- the cases ---------------------------------------------------------------------------------


def at(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


def user_message(name: str, text: str, seconds: int) -> dict[str, Any]:
    return {
        "id": name,
        "type": "user_message",
        "created_at": at(seconds),
        "attachments": [],
        "content": [{"type": "input_text", "text": text}],
        "inference_options": {},
    }


def assistant_message(name: str, text: str, seconds: int) -> dict[str, Any]:
    return {
        "id": name,
        "type": "assistant_message",
        "created_at": at(seconds),
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def tool_call(name: str, seconds: int, status: str = "pending") -> dict[str, Any]:
    return {
        "id": name,
        "type": "client_tool_call",
        "created_at": at(seconds),
        "status": status,
        "call_id": f"call_{name}",
        "name": "get_selection",
        "arguments": {"all": True},
        "output": None,
    }


def widget(name: str, seconds: int) -> dict[str, Any]:
    return {
        "id": name,
        "type": "widget",
        "created_at": at(seconds),
        "widget": {"type": "Card", "children": [{"type": "Text", "value": "Pick one"}]},
    }


def structured_input(name: str, seconds: int, status: str = "pending") -> dict[str, Any]:
    return {
        "id": name,
        "type": "structured_input",
        "created_at": at(seconds),
        "status": status,
        "inputs": [
            {
                "id": "subject",
                "question": "Which?",
                "type": "multiple_choice",
                "options": [{"value": "Math"}, {"value": "Art"}],
                "multiple": False,
            },
            {
                "id": "tags",
                "question": "Tags?",
                "type": "multiple_choice",
                "options": [{"value": "a"}],
                "multiple": True,
            },
            {"id": "notes", "question": "Notes?", "type": "freeform", "description": "optional"},
        ],
    }


Request = Callable[[str, Callable[[str], str]], dict[str, Any]]


@dataclass
class Case:
    name: str
    request: Request  # (thread id, seeded item name -> its id on this side) -> request body
    seed: list[dict[str, Any]] | None = field(default_factory=list)  # None: no thread
    title: str | None = "Seeded"


CASES = [
    Case(
        "create",
        lambda t, i: {
            "type": "threads.create",
            "params": {"input": user_input("Plan a trip to Lyon")},
        },
        seed=None,
    ),
    Case(
        "create-blank-text",
        lambda t, i: {"type": "threads.create", "params": {"input": user_input("  ")}},
        seed=None,
    ),
    Case(
        "add-user-message",
        lambda t, i: {
            "type": "threads.add_user_message",
            "params": {"thread_id": t, "input": user_input("Second message here")},
        },
        seed=[user_message("u1", "First", 0), assistant_message("a1", "First", 1)],
    ),
    Case(
        "add-user-message-untitled",
        lambda t, i: {
            "type": "threads.add_user_message",
            "params": {"thread_id": t, "input": user_input("Name this thread")},
        },
        title=None,
    ),
    Case(
        "client-tool-output",
        lambda t, i: {
            "type": "threads.add_client_tool_output",
            "params": {"thread_id": t, "result": {"count": 3, "none": None}},
        },
        seed=[user_message("u1", "Select", 0), tool_call("tc_old", 1), tool_call("tc_new", 2)],
    ),
    Case(
        "client-tool-output-not-pending",
        lambda t, i: {
            "type": "threads.add_client_tool_output",
            "params": {"thread_id": t, "result": 1},
        },
        seed=[tool_call("tc_done", 1, "completed")],
    ),
    Case(
        "structured-input",
        lambda t, i: {
            "type": "threads.add_structured_input",
            "params": {
                "thread_id": t,
                "item_id": i("si"),
                "input": {
                    "answers": {
                        "subject": {"values": ["Math", "Art"]},
                        "tags": {"values": ["a", "b"]},
                        "nope": {"values": ["x"]},
                    }
                },
            },
        },
        seed=[user_message("u1", "Quiz me", 0), structured_input("si", 1)],
    ),
    Case(
        "structured-input-skipped",
        lambda t, i: {
            "type": "threads.add_structured_input",
            "params": {
                "thread_id": t,
                "item_id": i("si"),
                "input": {"status": "skipped", "answers": {"subject": {"values": ["Art"]}}},
            },
        },
        seed=[structured_input("si", 1)],
    ),
    Case(
        "structured-input-answered-already",
        lambda t, i: {
            "type": "threads.add_structured_input",
            "params": {"thread_id": t, "item_id": i("si"), "input": {"answers": {}}},
        },
        seed=[structured_input("si", 1, "answered")],
    ),
    Case(
        "structured-input-wrong-item",
        lambda t, i: {
            "type": "threads.add_structured_input",
            "params": {"thread_id": t, "item_id": i("u1"), "input": {"answers": {}}},
        },
        seed=[user_message("u1", "Hi", 0)],
    ),
    Case(
        "retry-after-item",
        lambda t, i: {
            "type": "threads.retry_after_item",
            "params": {"thread_id": t, "item_id": i("u1")},
        },
        seed=[
            user_message("u1", "First question", 0),
            assistant_message("a1", "First", 1),
            user_message("u2", "Second", 2),
            assistant_message("a2", "Second", 3),
        ],
    ),
    Case(
        "retry-after-unknown-item",
        lambda t, i: {
            "type": "threads.retry_after_item",
            "params": {"thread_id": t, "item_id": "msg_nope"},
        },
        seed=[user_message("u1", "Hi", 0)],
    ),
    Case(
        "retry-after-assistant",
        lambda t, i: {
            "type": "threads.retry_after_item",
            "params": {"thread_id": t, "item_id": i("a1")},
        },
        seed=[user_message("u1", "Hi", 0), assistant_message("a1", "Hi", 1)],
    ),
    Case(
        "custom-action",
        lambda t, i: {
            "type": "threads.custom_action",
            "params": {
                "thread_id": t,
                "item_id": i("w1"),
                "action": {"type": "submit", "payload": {"x": 1, "y": [True, None]}},
            },
        },
        seed=[widget("w1", 0)],
    ),
    Case(
        "custom-action-no-sender",
        lambda t, i: {
            "type": "threads.custom_action",
            "params": {"thread_id": t, "action": {"type": "refresh"}},
        },
    ),
    Case(
        "custom-action-not-a-widget",
        lambda t, i: {
            "type": "threads.custom_action",
            "params": {"thread_id": t, "item_id": i("u1"), "action": {"type": "submit"}},
        },
        seed=[user_message("u1", "Hi", 0)],
    ),
]


# -- running a case on each side ---------------------------------------------------------------


async def seed_thread(store: Any, case: Case, prefix: str) -> tuple[str, Callable[[str], str]]:
    """A thread of Alice's holding the case's items, their ids prefixed for this side."""
    thread_id = store.generate_thread_id(ALICE)
    thread = ThreadMetadata(id=thread_id, title=case.title, created_at=BASE)
    await store.save_thread(thread, ALICE)
    for item in case.seed or []:
        item = {**item, "id": f"{prefix}_{item['id']}", "thread_id": thread_id}
        await store.add_thread_item(thread_id, ITEM.validate_python(item), ALICE)
    return thread_id, lambda name: f"{prefix}_{name}"


async def stored_thread(store: Any, thread_id: str) -> dict[str, Any]:
    thread = await store.load_thread(thread_id, ALICE)
    page = await store.load_thread_items(thread_id, None, 100, "asc", ALICE)
    return {
        "thread": thread.model_dump(mode="json"),
        "items": [item.model_dump(mode="json") for item in page.data],
    }


def placeholders(value: Any) -> Any:
    """``value`` with ids and timestamps replaced by placeholders numbered by first appearance
    (JSON key order is not significant, and is not compared)."""
    names: dict[str, str] = {}

    def walk(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            # Keys in sorted order, so numbering does not depend on how each side orders them.
            return {k: walk(node[k], k) for k in sorted(node)}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if key in ("id", "item_id", "thread_id", "after") and isinstance(node, str):
            return names.setdefault(node, f"<id {len(names)}>")
        if key == "created_at" and isinstance(node, str):
            return "<time>"
        return node

    return walk(value)


async def python_side(store: Any, case: Case) -> tuple[Any, Any]:
    thread_id, item_id = (None, None) if case.seed is None else await seed_thread(store, case, "py")
    request = case.request(thread_id or "", item_id or (lambda name: name))
    try:
        events: Any = await process_stream(MirrorServer(store), request, ALICE)
    except Exception as error:  # the SDK fails such requests after the stream started
        events = f"failed: {type(error).__name__}"
    thread_id = thread_id or (events[0]["thread"]["id"] if isinstance(events, list) else None)
    return events, (await stored_thread(store, thread_id) if thread_id else None)


async def rust_side(server: Any, store: Any, case: Case) -> tuple[Any, Any]:
    thread_id, item_id = (None, None) if case.seed is None else await seed_thread(store, case, "rs")
    request = case.request(thread_id or "", item_id or (lambda name: name))
    response = rust_chatkit(server, request)
    if response.status_code == 200:
        assert response.headers["content-type"] == "text/event-stream"
        events: Any = decode_sse(response.content)
    else:
        assert 400 <= response.status_code < 500, response.text
        events = f"failed: {response.status_code}"
    thread_id = thread_id or (events[0]["thread"]["id"] if isinstance(events, list) else None)
    return events, (await stored_thread(store, thread_id) if thread_id else None)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_same_stream_and_same_state(server, make_chatkit_store, case: Case) -> None:
    store = make_chatkit_store()
    python_events, python_state = await python_side(store, case)
    rust_events, rust_state = await rust_side(server, store, case)
    if isinstance(python_events, str):
        # A request the SDK refuses after HTTP 200 is a 4xx before any stream here, and
        # changes nothing on either side.
        assert isinstance(rust_events, str), (
            f"the SDK failed ({python_events}); Rust streamed {rust_events}"
        )
    else:
        diffs = json_diff(placeholders(python_events), placeholders(rust_events))
        assert not diffs, "\n".join([f"events differ for {case.name}:", *diffs])
    diffs = json_diff(placeholders(python_state), placeholders(rust_state))
    assert not diffs, "\n".join([f"stored state differs for {case.name}:", *diffs])
