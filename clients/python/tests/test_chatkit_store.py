"""ChatstoreStore / ChatstoreAttachmentStore under chatkit-python's real ChatKitServer, against
real chatstore servers; what they store is checked through the raw HTTP API."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from chatkit.store import AttachmentStore, NotFoundError, Store
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    AttachmentCreateParams,
    ClientToolCallItem,
    EndOfTurnItem,
    FileAttachment,
    HiddenContextItem,
    ImageAttachment,
    InferenceOptions,
    Thread,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from chatkit.widgets import Card, Text
from chatkit_support import (
    ALICE,
    BOB,
    Ctx,
    EchoServer,
    process_json,
    process_stream,
    user_input,
)
from pydantic import TypeAdapter

from chatstore import ChatstoreAttachmentStore, ChatstoreError, ChatstoreStore

ITEM = TypeAdapter(ThreadItem)
ATTACHMENT = TypeAdapter(Attachment)
LONG_ID = re.compile(r"^(thr|msg|atc)_[0-9a-f]{32}$")


def stored(server, path: str, user: str = "alice", **params: Any) -> Any:
    """What the server holds, read with plain HTTP (not through the adapter)."""
    response = server.request("GET", path, user=user, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def status_of(server, path: str, user: str = "alice") -> int:
    return server.request("GET", path, user=user).status_code


def stored_form(wire_item: dict[str, Any]) -> dict[str, Any]:
    """The stored form of an item the server sent (nulls restored by the SDK's model)."""
    return ITEM.validate_python(wire_item).model_dump(mode="json")


# -- the streaming flow ------------------------------------------------------------------------


async def test_threads_create_streams_and_stores(server, make_chatkit_store) -> None:
    store = make_chatkit_store()
    chatkit = EchoServer(store, hidden=True)

    events = await process_stream(
        chatkit, {"type": "threads.create", "params": {"input": user_input("Hello there")}}, ALICE
    )
    assert [event["type"] for event in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.added",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.done",
        "thread.updated",
    ]  # the hidden item's done event is stored but not sent

    created = events[0]["thread"]
    thread_id = created["id"]
    assert LONG_ID.match(thread_id), thread_id
    assert created == {
        "id": thread_id,
        "created_at": created["created_at"],
        "status": {"type": "active"},
        "metadata": {},
        "items": {"data": [], "has_more": False},
    }
    user_message = events[1]["item"]
    assert LONG_ID.match(user_message["id"])
    assert user_message == {
        "id": user_message["id"],
        "thread_id": thread_id,
        "created_at": user_message["created_at"],
        "type": "user_message",
        "content": [{"type": "input_text", "text": "Hello there"}],
        "attachments": [],
        "inference_options": {},
    }
    assert events[2] == {"type": "stream_options", "stream_options": {"allow_cancel": True}}
    assistant_id = events[3]["item"]["id"]
    assert events[3]["item"]["content"] == []
    assert [event["update"]["type"] for event in events[4:8]] == [
        "assistant_message.content_part.added",
        "assistant_message.content_part.text_delta",
        "assistant_message.content_part.text_delta",
        "assistant_message.content_part.done",
    ]
    assert [event["update"].get("delta") for event in events[5:7]] == ["You said: ", "Hello there"]
    assert all(event["item_id"] == assistant_id for event in events[4:8])
    assistant = events[8]["item"]
    assert assistant["id"] == assistant_id
    assert assistant["content"] == [
        {"annotations": [], "text": "You said: Hello there", "type": "output_text"}
    ]
    assert events[9]["thread"]["title"] == "Hello there"

    # What the server stored: the thread (with its new title, without `items`) ...
    assert stored(server, f"/threads/{thread_id}") == {
        "title": "Hello there",
        "id": thread_id,
        "created_at": created["created_at"],
        "status": {"type": "active"},
        "allowed_image_domains": None,
        "metadata": {},
    }
    # ... and its items, oldest first, in stored form (nulls kept), the hidden one included.
    page = stored(server, f"/threads/{thread_id}/items", order="asc")
    assert page["has_more"] is False and page["after"] is None
    user_stored, assistant_stored, hidden_stored = page["data"]
    assert user_stored == stored_form(user_message)
    assert user_stored["quoted_text"] is None
    assert user_stored["inference_options"] == {"tool_choice": None, "model": None}
    assert assistant_stored == stored_form(assistant)
    assert hidden_stored["type"] == "hidden_context_item"
    assert hidden_stored["content"] == {"answered": "Hello there"}
    assert hidden_stored["thread_id"] == thread_id

    # A second message: the thread is loaded back through the adapter.
    events = await process_stream(
        chatkit,
        {
            "type": "threads.add_user_message",
            "params": {"thread_id": thread_id, "input": user_input("again")},
        },
        ALICE,
    )
    assert [event["type"] for event in events] == [
        "thread.item.done",
        "stream_options",
        "thread.item.added",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.done",
    ]
    assert len(stored(server, f"/threads/{thread_id}/items")["data"]) == 6

    full = await process_json(
        chatkit, {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}, ALICE
    )
    assert full["title"] == "Hello there"
    assert [item["type"] for item in full["items"]["data"]] == [
        "user_message",
        "assistant_message",
        "user_message",
        "assistant_message",
    ]
    assert full["items"]["data"][3]["content"][0]["text"] == "You said: again"


async def test_items_and_threads_page_past_20(server, make_chatkit_store) -> None:
    store = make_chatkit_store()
    chatkit = EchoServer(store)
    events = await process_stream(
        chatkit, {"type": "threads.create", "params": {"input": user_input("m0")}}, ALICE
    )
    thread_id = events[0]["thread"]["id"]
    for n in range(1, 14):
        await process_stream(
            chatkit,
            {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread_id, "input": user_input(f"m{n}")},
            },
            ALICE,
        )
    raw = stored(server, f"/threads/{thread_id}/items", order="asc", limit=100)
    oldest_first = [item["id"] for item in raw["data"]]
    assert len(oldest_first) == 28

    # items.list: newest first, 20 by default, then follow `after`.
    first = await process_json(
        chatkit, {"type": "items.list", "params": {"thread_id": thread_id}}, ALICE
    )
    assert len(first["data"]) == 20 and first["has_more"] is True
    assert first["after"] == first["data"][-1]["id"]
    second = await process_json(
        chatkit,
        {"type": "items.list", "params": {"thread_id": thread_id, "after": first["after"]}},
        ALICE,
    )
    assert len(second["data"]) == 8 and second["has_more"] is False and "after" not in second
    assert [item["id"] for item in first["data"] + second["data"]] == oldest_first[::-1]

    # Oldest first, 9 at a time.
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"thread_id": thread_id, "order": "asc", "limit": 9}
        if after:
            params["after"] = after
        page = await process_json(chatkit, {"type": "items.list", "params": params}, ALICE)
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        after = page["after"]
    assert seen == oldest_first

    # threads.get_by_id carries the OLDEST 20.
    full = await process_json(
        chatkit, {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}, ALICE
    )
    assert [item["id"] for item in full["items"]["data"]] == oldest_first[:20]
    assert full["items"]["has_more"] is True and full["items"]["after"] == oldest_first[19]

    # threads.list past 20: 22 more threads, newest first by created_at.
    base = datetime.now() + timedelta(minutes=1)
    for n in range(22):
        thread = ThreadMetadata(
            id=store.generate_thread_id(ALICE),
            title=f"t{n}",
            created_at=base + timedelta(seconds=n),
        )
        await store.save_thread(thread, ALICE)
    first = await process_json(chatkit, {"type": "threads.list", "params": {}}, ALICE)
    assert [t.get("title") for t in first["data"]] == [f"t{n}" for n in range(21, 1, -1)]
    assert first["has_more"] is True and first["after"] == first["data"][-1]["id"]
    assert all(t["items"] == {"data": [], "has_more": False} for t in first["data"])
    second = await process_json(
        chatkit, {"type": "threads.list", "params": {"after": first["after"]}}, ALICE
    )
    assert [t.get("title") for t in second["data"]] == ["t1", "t0", "m0"]
    assert second["has_more"] is False and "after" not in second
    ascending = await process_json(
        chatkit, {"type": "threads.list", "params": {"order": "asc", "limit": 2}}, ALICE
    )
    assert [t.get("title") for t in ascending["data"]] == ["m0", "t0"]


async def test_threads_update_and_delete(server, make_chatkit_store) -> None:
    store = make_chatkit_store()
    chatkit = EchoServer(store)
    events = await process_stream(
        chatkit, {"type": "threads.create", "params": {"input": user_input("first")}}, ALICE
    )
    thread_id = events[0]["thread"]["id"]
    # Server-private metadata, which the SDK never sends but must keep.
    thread = await store.load_thread(thread_id, ALICE)
    thread.metadata = {"previous_response_id": "resp_1"}
    await store.save_thread(thread, ALICE)

    updated = await process_json(
        chatkit,
        {"type": "threads.update", "params": {"thread_id": thread_id, "title": "Renamed ✈"}},
        ALICE,
    )
    assert updated == {
        "title": "Renamed ✈",
        "id": thread_id,
        "created_at": events[0]["thread"]["created_at"],
        "status": {"type": "active"},
        "metadata": {},
        "items": {"data": [], "has_more": False},
    }
    raw = stored(server, f"/threads/{thread_id}")
    assert raw["title"] == "Renamed ✈"
    assert raw["metadata"] == {"previous_response_id": "resp_1"}

    assert (
        await process_json(
            chatkit, {"type": "threads.delete", "params": {"thread_id": thread_id}}, ALICE
        )
        == {}
    )
    assert status_of(server, f"/threads/{thread_id}") == 404
    assert status_of(server, f"/threads/{thread_id}/items") == 404
    with pytest.raises(NotFoundError):
        await process_json(
            chatkit, {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}, ALICE
        )
    with pytest.raises(NotFoundError):
        await process_json(
            chatkit,
            {"type": "threads.update", "params": {"thread_id": thread_id, "title": "x"}},
            ALICE,
        )
    # Deleting again is fine; items.list of the deleted thread is an empty page.
    assert (
        await process_json(
            chatkit, {"type": "threads.delete", "params": {"thread_id": thread_id}}, ALICE
        )
        == {}
    )
    assert await process_json(
        chatkit, {"type": "items.list", "params": {"thread_id": thread_id}}, ALICE
    ) == {"data": [], "has_more": False}


# -- attachments -------------------------------------------------------------------------------


async def test_attachments_create_upload_preview_and_delete(server, make_chatkit_store) -> None:
    store = make_chatkit_store()
    attachments = store.attachment_store()
    assert isinstance(attachments, ChatstoreAttachmentStore)
    chatkit = EchoServer(store, attachments)

    image = await process_json(
        chatkit,
        {
            "type": "attachments.create",
            "params": {"name": "cat.png", "size": 7, "mime_type": "image/png"},
        },
        ALICE,
    )
    attachment_id = image["id"]
    assert attachment_id.startswith("atc_")
    assert set(image) == {"id", "name", "mime_type", "upload_descriptor", "type", "preview_url"}
    assert (image["name"], image["mime_type"], image["type"]) == ("cat.png", "image/png", "image")
    descriptor = image["upload_descriptor"]
    assert descriptor["method"] == "PUT"
    assert descriptor["url"].startswith(f"{server.url}/attachments/{attachment_id}/content?")
    # The server stored the metadata (as the SDK's Store.save_attachment did again).
    raw = stored(server, f"/attachments/{attachment_id}")
    assert raw["upload_descriptor"] == descriptor and raw["preview_url"] == image["preview_url"]
    assert raw["thread_id"] is None

    # Nothing uploaded yet; then the browser's upload: plain httpx, no token.
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(image["preview_url"])).status_code == 404
        upload = await browser.request(
            descriptor["method"],
            descriptor["url"],
            content=b"\x89PNG\r\n\x1a",
            headers=descriptor["headers"],
        )
        assert upload.status_code in (200, 201, 204), upload.text
        preview = await browser.get(image["preview_url"])
        assert preview.status_code == 200
        assert preview.content == b"\x89PNG\r\n\x1a"
        assert preview.headers["content-type"].startswith("image/png")
        # The signed URL is for this attachment only, and still needs its signature.
        unsigned = descriptor["url"].split("?")[0]
        assert (await browser.put(unsigned, content=b"x")).status_code == 401

    file = await process_json(
        chatkit,
        {
            "type": "attachments.create",
            "params": {"name": "notes.txt", "size": 5, "mime_type": "text/plain"},
        },
        ALICE,
    )
    assert file["type"] == "file" and "preview_url" not in file

    # Sent with a message: the attachments get the thread id, in the item and in the store.
    events = await process_stream(
        chatkit,
        {
            "type": "threads.create",
            "params": {"input": user_input("look", attachments=[attachment_id, file["id"]])},
        },
        ALICE,
    )
    thread_id = events[0]["thread"]["id"]
    sent = events[1]["item"]["attachments"]
    assert [a["id"] for a in sent] == [attachment_id, file["id"]]
    assert all(a["thread_id"] == thread_id for a in sent)
    assert stored(server, f"/attachments/{attachment_id}")["thread_id"] == thread_id
    assert stored(server, f"/attachments/{file['id']}")["thread_id"] == thread_id

    # attachments.delete: metadata and bytes are gone.
    assert (
        await process_json(
            chatkit,
            {"type": "attachments.delete", "params": {"attachment_id": attachment_id}},
            ALICE,
        )
        == {}
    )
    assert status_of(server, f"/attachments/{attachment_id}") == 404
    assert status_of(server, f"/attachments/{attachment_id}/content") == 404
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(image["preview_url"])).status_code == 404
    with pytest.raises(NotFoundError):
        await store.load_attachment(attachment_id, ALICE)
    # The thread's history still names it (the SDK never rewrites items).
    assert stored(server, f"/threads/{thread_id}/items")["data"][0]["attachments"][0]["id"] == (
        attachment_id
    )
    # Deleting again is fine.
    await attachments.delete_attachment(attachment_id, ALICE)
    await store.delete_attachment(attachment_id, ALICE)


# -- tenancy -----------------------------------------------------------------------------------


async def test_users_are_isolated(server, make_chatkit_store) -> None:
    store = make_chatkit_store()  # one store for everyone: token_for(context)
    chatkit = EchoServer(store, store.attachment_store())
    events = await process_stream(
        chatkit, {"type": "threads.create", "params": {"input": user_input("alice's")}}, ALICE
    )
    thread_id = events[0]["thread"]["id"]
    user_item_id = events[1]["item"]["id"]
    attachment = await process_json(
        chatkit,
        {
            "type": "attachments.create",
            "params": {"name": "a.txt", "size": 1, "mime_type": "text/plain"},
        },
        ALICE,
    )

    # Bob sees nothing of Alice's ...
    assert await process_json(chatkit, {"type": "threads.list", "params": {}}, BOB) == {
        "data": [],
        "has_more": False,
    }
    assert await process_json(
        chatkit, {"type": "items.list", "params": {"thread_id": thread_id}}, BOB
    ) == {"data": [], "has_more": False}
    for request in (
        {"type": "threads.get_by_id", "params": {"thread_id": thread_id}},
        {"type": "threads.update", "params": {"thread_id": thread_id, "title": "mine"}},
    ):
        with pytest.raises(NotFoundError):
            await process_json(chatkit, request, BOB)
    with pytest.raises(NotFoundError):
        await store.load_item(thread_id, user_item_id, BOB)
    with pytest.raises(NotFoundError):
        await store.load_attachment(attachment["id"], BOB)
    with pytest.raises(NotFoundError):
        await store.add_thread_item(
            thread_id,
            EndOfTurnItem(id="msg_bob", thread_id=thread_id, created_at=datetime.now()),
            BOB,
        )
    # ... a streaming request on Alice's thread fails before any event ...
    with pytest.raises(NotFoundError):
        await process_stream(
            chatkit,
            {
                "type": "threads.add_user_message",
                "params": {"thread_id": thread_id, "input": user_input("hi")},
            },
            BOB,
        )
    # ... and Bob's deletes change nothing of Alice's.
    for request in (
        {"type": "threads.delete", "params": {"thread_id": thread_id}},
        {"type": "attachments.delete", "params": {"attachment_id": attachment["id"]}},
    ):
        assert await process_json(chatkit, request, BOB) == {}
    await store.delete_thread_item(thread_id, user_item_id, BOB)
    assert stored(server, f"/threads/{thread_id}")["title"] == "alice's"
    assert len(stored(server, f"/threads/{thread_id}/items")["data"]) == 2
    assert status_of(server, f"/attachments/{attachment['id']}") == 200

    # The same thread id under Bob is Bob's own thread.
    bobs = ThreadMetadata(id=thread_id, title="bob's", created_at=datetime.now())
    await store.save_thread(bobs, BOB)
    assert (await store.load_thread(thread_id, BOB)).title == "bob's"
    assert (await store.load_thread(thread_id, ALICE)).title == "alice's"
    assert (await store.load_thread_items(thread_id, None, 20, "asc", BOB)).data == []
    assert stored(server, f"/threads/{thread_id}", user="bob")["title"] == "bob's"
    assert [t["title"] for t in stored(server, "/threads")["data"]] == ["alice's"]


# -- the Store methods themselves --------------------------------------------------------------


def sample_items(thread_id: str) -> list[Any]:
    at = datetime(2025, 10, 6, 12, 0, 0, 123456)
    file = FileAttachment(
        id="atc_file",
        name="notes.txt",
        mime_type="text/plain",
        thread_id=thread_id,
        metadata={"s3_key": "k/1"},
    )
    image = ImageAttachment(
        id="atc_img",
        name="cat.png",
        mime_type="image/png",
        preview_url="https://example.com",
        metadata={"bucket": "b"},
    )
    return [
        UserMessageItem(
            id="msg_u1", thread_id=thread_id, created_at=at,
            content=[UserMessageTextContent(text="Hi 👋 \u0000")],
            attachments=[file, image], quoted_text=None,
            inference_options=InferenceOptions(model="gpt-4.1"),
        ),
        AssistantMessageItem(
            id="msg_a1", thread_id=thread_id, created_at=at + timedelta(seconds=1),
            content=[AssistantMessageContent(text="Hello")],
        ),
        ClientToolCallItem(
            id="tc_1", thread_id=thread_id, created_at=at + timedelta(seconds=1),
            call_id="call_1", name="get_selection", arguments={"a": 1, "n": None},
        ),
        WidgetItem(
            id="msg_w1", thread_id=thread_id, created_at=at.replace(microsecond=0),
            widget=Card(children=[Text(value="Hi")]), copy_text="Hi",
        ),
        HiddenContextItem(
            id="msg_h1", thread_id=thread_id, created_at=at + timedelta(seconds=2),
            content={"any": ["json", None]},
        ),
    ]  # fmt: skip


async def test_store_round_trips_and_sdk_semantics(server, make_chatkit_store) -> None:
    store = make_chatkit_store()
    thread = ThreadMetadata(id="thr_store", title=None, created_at=datetime(2025, 10, 6, 12))
    await store.save_thread(thread, ALICE)
    assert await store.load_thread("thr_store", ALICE) == thread

    items = sample_items("thr_store")
    for item in items:
        await store.add_thread_item("thr_store", item, ALICE)
    page = await store.load_thread_items("thr_store", None, 20, "asc", ALICE)
    # Equal to the originals: naive datetimes, attachment metadata, nulls, widgets, NUL.
    by_time = sorted(items, key=lambda item: item.created_at)  # stable: ties keep insertion
    assert page.data == by_time
    assert page.has_more is False and page.after is None
    desc = await store.load_thread_items("thr_store", None, 2, "desc", ALICE)
    assert [i.id for i in desc.data] == ["msg_h1", "tc_1"] and desc.after == "tc_1"
    rest = await store.load_thread_items("thr_store", "tc_1", 20, "desc", ALICE)
    assert [i.id for i in rest.data] == ["msg_a1", "msg_u1", "msg_w1"] and not rest.has_more
    assert await store.load_item("thr_store", "msg_u1", ALICE) == items[0]

    # add_thread_item is idempotent by id (the Agents glue re-adds open workflows).
    again = items[1].model_copy(update={"content": [AssistantMessageContent(text="Hello!")]})
    await store.add_thread_item("thr_store", again, ALICE)
    assert await store.load_item("thr_store", "msg_a1", ALICE) == again
    assert len((await store.load_thread_items("thr_store", None, 20, "asc", ALICE)).data) == 5
    # save_item upserts, also an item that did not exist.
    done = items[2].model_copy(update={"status": "completed", "output": {"ok": True}})
    await store.save_item("thr_store", done, ALICE)
    assert await store.load_item("thr_store", "tc_1", ALICE) == done
    new = EndOfTurnItem(id="msg_end", thread_id="thr_store", created_at=datetime(2026, 1, 1))
    await store.save_item("thr_store", new, ALICE)
    assert await store.load_item("thr_store", "msg_end", ALICE) == new

    # Missing objects.
    orphan = EndOfTurnItem(id="msg_end", thread_id="thr_missing", created_at=datetime(2026, 1, 1))
    for load in (
        lambda: store.load_thread("thr_missing", ALICE),
        lambda: store.load_item("thr_store", "msg_missing", ALICE),
        lambda: store.load_item("thr_missing", "msg_u1", ALICE),
        lambda: store.load_attachment("atc_missing", ALICE),
        lambda: store.add_thread_item("thr_missing", orphan, ALICE),
        lambda: store.save_item("thr_missing", orphan, ALICE),
    ):
        with pytest.raises(NotFoundError):
            await load()
    assert await store.load_thread_items("thr_missing", None, 20, "asc", ALICE) == (
        await store.load_thread_items("thr_missing", None, 20, "desc", ALICE)
    )
    assert (await store.load_thread_items("thr_missing", None, 20, "asc", ALICE)).data == []
    await store.delete_thread_item("thr_store", "msg_missing", ALICE)
    await store.delete_thread("thr_missing", ALICE)
    await store.delete_attachment("atc_missing", ALICE)

    # Attachments round-trip with their metadata; save_attachment upserts.
    for attachment in items[0].attachments:
        await store.save_attachment(attachment, ALICE)
        assert await store.load_attachment(attachment.id, ALICE) == attachment
    moved = items[0].attachments[1].model_copy(update={"thread_id": "thr_store"})
    await store.save_attachment(moved, ALICE)
    assert await store.load_attachment("atc_img", ALICE) == moved
    assert stored(server, "/attachments/atc_img")["metadata"] == {"bucket": "b"}

    # save_thread with a whole Thread: the items are not stored with it.
    whole = Thread(**thread.model_dump(), items=page)
    whole.title = "whole"
    await store.save_thread(whole, ALICE)
    raw = stored(server, "/threads/thr_store")
    assert "items" not in raw and raw["title"] == "whole"

    # An unknown cursor is the server's 400.
    with pytest.raises(ChatstoreError) as caught:
        await store.load_thread_items("thr_store", "msg_missing", 20, "asc", ALICE)
    assert caught.value.status_code == 400
    with pytest.raises(ValueError):
        await store.load_threads(0, None, "desc", ALICE)

    await store.delete_thread("thr_store", ALICE)
    with pytest.raises(NotFoundError):
        await store.load_item("thr_store", "msg_u1", ALICE)


async def test_limits_above_the_server_page_size(server, make_chatkit_store) -> None:
    store = make_chatkit_store()
    await store.save_thread(ThreadMetadata(id="thr_big", created_at=datetime(2025, 1, 1)), ALICE)
    base = datetime(2025, 1, 1)
    ids = []
    for n in range(105):
        item = EndOfTurnItem(
            id=f"msg_{n:03}", thread_id="thr_big", created_at=base + timedelta(seconds=n // 2)
        )  # pairs share a created_at: ties keep insertion order
        await store.add_thread_item("thr_big", item, ALICE)
        ids.append(item.id)

    everything = await store.load_thread_items("thr_big", None, 150, "asc", ALICE)
    assert [i.id for i in everything.data] == ids
    assert everything.has_more is False and everything.after is None
    first = await store.load_thread_items("thr_big", None, 101, "desc", ALICE)
    assert [i.id for i in first.data] == ids[::-1][:101]
    assert first.has_more is True and first.after == ids[4]
    rest = await store.load_thread_items("thr_big", first.after, 101, "desc", ALICE)
    assert [i.id for i in rest.data] == ids[3::-1] and rest.has_more is False
    exact = await store.load_thread_items("thr_big", None, 105, "asc", ALICE)
    assert len(exact.data) == 105 and exact.has_more is False and exact.after is None

    chatkit = EchoServer(store)
    listed = await process_json(
        chatkit, {"type": "items.list", "params": {"thread_id": "thr_big", "limit": 120}}, ALICE
    )
    assert [i["id"] for i in listed["data"]] == ids[::-1] and listed["has_more"] is False


# -- identity, construction, retries -----------------------------------------------------------


async def test_token_sources(server) -> None:
    calls: list[Ctx] = []

    async def token_for(context: Ctx) -> str:
        calls.append(context)
        return server.token(context.user)

    thread = ThreadMetadata(id="thr_tok", title="t", created_at=datetime.now(timezone.utc))
    async with ChatstoreStore(server.url, token_for=token_for) as by_context:
        await by_context.save_thread(thread, BOB)
        assert await by_context.load_thread("thr_tok", BOB) == thread
        assert calls == [BOB, BOB]
        with pytest.raises(NotFoundError):
            await by_context.load_thread("thr_tok", ALICE)

    async with ChatstoreStore(server.url, token=server.token("bob")) as fixed:
        assert (await fixed.load_thread("thr_tok", None)).title == "t"
        assert fixed.generate_thread_id(None) != fixed.generate_thread_id(None)
        item_id = fixed.generate_item_id("sdk_hidden_context", thread, None)
        assert re.match(r"^shcx_[0-9a-f]{32}$", item_id)
    async with ChatstoreStore(server.url, token=lambda: server.token("bob")) as refreshed:
        assert (await refreshed.load_thread("thr_tok", None)).title == "t"

    async with ChatstoreStore(server.url, token="not-a-jwt") as bad:
        with pytest.raises(ChatstoreError) as caught:
            await bad.load_thread("thr_tok", None)
        assert (caught.value.status_code, caught.value.code) == (401, "unauthorized")

    with pytest.raises(ValueError):
        ChatstoreStore(server.url)
    with pytest.raises(ValueError):
        ChatstoreStore(server.url, token="t", token_for=lambda context: "t")
    with pytest.raises(ValueError):
        ChatstoreStore("", token="t")
    async with ChatstoreStore(server.url, token="t") as plain:
        assert isinstance(plain, Store)
        assert isinstance(plain.attachment_store(), AttachmentStore)


class InjectedFaults(httpx.AsyncBaseTransport):
    """Answers 503 to the first ``fail`` requests of each method, then forwards."""

    def __init__(self, fail: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.fail = fail
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if sum(1 for s in self.seen if s.startswith(request.method + " ")) <= self.fail:
            return httpx.Response(
                503,
                headers={"Retry-After": "0"},
                json={"error": {"code": "unavailable", "message": "injected"}},
            )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_idempotent_calls_are_retried_and_attachment_creation_is_not(server) -> None:
    transport = InjectedFaults(fail=1)
    async with httpx.AsyncClient(transport=transport) as client:
        store = ChatstoreStore(
            server.url, token=server.token("alice"), client=client, retry_backoff=0.01
        )
        thread = ThreadMetadata(id="thr_retry", created_at=datetime.now())
        await store.save_thread(thread, None)  # PUT: 503, then saved
        assert await store.load_thread("thr_retry", None) == thread  # GET: 503, then read
        assert transport.seen == [
            "PUT /threads/thr_retry",
            "PUT /threads/thr_retry",
            "GET /threads/thr_retry",
            "GET /threads/thr_retry",
        ]
        attachments = store.attachment_store()
        with pytest.raises(ChatstoreError) as caught:
            await attachments.create_attachment(
                attachments_params("a.txt", "text/plain"), None
            )  # POST: one 503, not repeated
        assert caught.value.status_code == 503
        assert transport.seen[-1] == "POST /chatkit" and transport.seen.count("POST /chatkit") == 1
        created = await attachments.create_attachment(
            attachments_params("a.txt", "text/plain"), None
        )
        assert created.upload_descriptor is not None
        await store.aclose()
        assert not client.is_closed  # a client passed in stays open


def attachments_params(name: str, mime_type: str) -> AttachmentCreateParams:
    return AttachmentCreateParams(name=name, size=1, mime_type=mime_type)
