"""The Python peer of the ChatKit turn table: chatkit-python's ``ChatKitServer`` with an echo
``respond``, as a FastAPI app with ``POST /chatkit``, served by uvicorn (one worker).

    python chatkit_server.py psycopg   PORT POSTGRES_URL
    python chatkit_server.py chatstore PORT CHATSTORE_URL

Two stores, as a Python team would deploy them:

- ``psycopg``: :class:`SeedPostgresStore`, built the way the seed ``001_9718ca2640416d75.txt``
  builds its ``PostgresStore``: psycopg 3, a new connection for every store call, its two
  tables (created here at start-up), JSONB documents. Every request is user ``bench``.
- ``chatstore``: the project's own ``ChatstoreStore`` (clients/python), talking to a chatstore
  server; each request runs as the user of the bearer token it came with.

The echo answers the user's text back, word by word, as one assistant message, and titles an
untitled thread after it: the events chatstore's default echo responder sends.

Dependencies: ``requirements.txt`` beside this file (uvicorn's standard extras, so uvicorn
picks uvloop and httptools, its defaults when they are installed).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import uvicorn
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError, Store
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    Attachment,
    Page,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from psycopg.types.json import Jsonb
from pydantic import TypeAdapter

# The project's Python client, from this checkout rather than an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "clients" / "python"))

BENCH_USER = "bench"
_ITEM: TypeAdapter[Any] = TypeAdapter(ThreadItem)


@dataclass
class RequestContext:
    """Who is asking: the user, and the bearer token they came with."""

    user_id: str
    token: str


class SeedPostgresStore(Store[RequestContext]):
    """The seed's design: psycopg, one connection opened and closed per call, synchronous
    calls inside the async methods, the thread and item documents as JSONB."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._create_schema()

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._conninfo)

    def _create_schema(self) -> None:
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS chatkit_threads ("
                " id TEXT PRIMARY KEY, user_id TEXT NOT NULL,"
                " created_at TIMESTAMPTZ NOT NULL, data JSONB NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS chatkit_items ("
                " id TEXT PRIMARY KEY,"
                " thread_id TEXT NOT NULL REFERENCES chatkit_threads(id) ON DELETE CASCADE,"
                " user_id TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL, data JSONB NOT NULL)"
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS idx_chatkit_items_thread_id"
                " ON chatkit_items(thread_id)"
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS idx_chatkit_threads_user_id"
                " ON chatkit_threads(user_id)"
            )

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._connect() as conn:
            row = conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._connect() as conn:
            return [row[0] for row in conn.execute(sql, params).fetchall()]

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        # Leaving the block commits.
        with self._connect() as conn:
            conn.execute(sql, params)

    async def load_thread(self, thread_id: str, context: RequestContext) -> ThreadMetadata:
        data = self._one(
            "SELECT data FROM chatkit_threads WHERE id = %s AND user_id = %s",
            (thread_id, context.user_id),
        )
        if data is None:
            raise NotFoundError(f"Thread {thread_id} not found")
        return ThreadMetadata.model_validate(data)

    async def save_thread(self, thread: ThreadMetadata, context: RequestContext) -> None:
        metadata = ThreadMetadata.model_validate(thread.model_dump())  # drops a Thread's items
        self._write(
            "INSERT INTO chatkit_threads (id, user_id, created_at, data) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data",
            (thread.id, context.user_id, thread.created_at, Jsonb(metadata.model_dump(mode="json"))),
        )

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: RequestContext
    ) -> Page[ThreadMetadata]:
        direction = "ASC" if order == "asc" else "DESC"
        rows = self._all(
            "SELECT data FROM chatkit_threads WHERE user_id = %s AND (%s::text IS NULL OR id > %s)"
            f" ORDER BY created_at {direction} LIMIT %s",
            (context.user_id, after, after, limit + 1),
        )
        data = [ThreadMetadata.model_validate(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        return Page(data=data, has_more=has_more, after=data[-1].id if has_more else None)

    async def delete_thread(self, thread_id: str, context: RequestContext) -> None:
        self._write(
            "DELETE FROM chatkit_threads WHERE id = %s AND user_id = %s",
            (thread_id, context.user_id),
        )

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: RequestContext
    ) -> Page[ThreadItem]:
        direction = "ASC" if order == "asc" else "DESC"
        rows = self._all(
            "SELECT data FROM chatkit_items WHERE thread_id = %s AND user_id = %s"
            f" AND (%s::text IS NULL OR id > %s) ORDER BY created_at {direction} LIMIT %s",
            (thread_id, context.user_id, after, after, limit + 1),
        )
        data = [_ITEM.validate_python(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        return Page(data=data, has_more=has_more, after=data[-1].id if has_more else None)

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: RequestContext
    ) -> None:
        self._write(
            "INSERT INTO chatkit_items (id, thread_id, user_id, created_at, data)"
            " VALUES (%s, %s, %s, %s, %s)",
            (item.id, thread_id, context.user_id, item.created_at, Jsonb(item.model_dump(mode="json"))),
        )

    async def save_item(self, thread_id: str, item: ThreadItem, context: RequestContext) -> None:
        self._write(
            "INSERT INTO chatkit_items (id, thread_id, user_id, created_at, data)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data",
            (item.id, thread_id, context.user_id, item.created_at, Jsonb(item.model_dump(mode="json"))),
        )

    async def load_item(self, thread_id: str, item_id: str, context: RequestContext) -> ThreadItem:
        data = self._one(
            "SELECT data FROM chatkit_items WHERE id = %s AND thread_id = %s AND user_id = %s",
            (item_id, thread_id, context.user_id),
        )
        if data is None:
            raise NotFoundError(f"Item {item_id} not found")
        return _ITEM.validate_python(data)

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: RequestContext
    ) -> None:
        self._write(
            "DELETE FROM chatkit_items WHERE id = %s AND thread_id = %s AND user_id = %s",
            (item_id, thread_id, context.user_id),
        )

    # The seed leaves attachments out; the turns send none.
    async def save_attachment(self, attachment: Attachment, context: RequestContext) -> None:
        raise NotImplementedError("no attachment storage")

    async def load_attachment(self, attachment_id: str, context: RequestContext) -> Attachment:
        raise NotImplementedError("no attachment storage")

    async def delete_attachment(self, attachment_id: str, context: RequestContext) -> None:
        raise NotImplementedError("no attachment storage")


def user_text(message: UserMessageItem) -> str:
    return " ".join(part.text for part in message.content if part.type == "input_text")


class EchoServer(ChatKitServer[RequestContext]):
    """Answers the user's words back, one text delta a word, as chatstore's echo does."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: RequestContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        if input_user_message is None:
            return
        text = user_text(input_user_message)
        message = AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context),
            thread_id=thread.id,
            created_at=datetime.now(),
            content=[],
        )
        yield ThreadItemAddedEvent(item=message)
        yield ThreadItemUpdatedEvent(
            item_id=message.id,
            update=AssistantMessageContentPartAdded(
                content_index=0, content=AssistantMessageContent(text="")
            ),
        )
        words = text.split(" ")
        # Each word with the space after it, as chatstore's echo splits the text.
        for word in [word + " " for word in words[:-1]] + words[-1:]:
            if word:
                yield ThreadItemUpdatedEvent(
                    item_id=message.id,
                    update=AssistantMessageContentPartTextDelta(content_index=0, delta=word),
                )
        said = AssistantMessageContent(text=text)
        yield ThreadItemUpdatedEvent(
            item_id=message.id,
            update=AssistantMessageContentPartDone(content_index=0, content=said),
        )
        yield ThreadItemDoneEvent(item=message.model_copy(update={"content": [said]}))
        # The server saves the thread when respond changes it, as chatstore's echo titles it.
        if thread.title is None and text.strip():
            thread.title = text.strip()[:60]


def make_app(server: EchoServer, fixed_user: str | None) -> FastAPI:
    app = FastAPI()

    @app.post("/chatkit")
    async def chatkit(request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        context = RequestContext(user_id=fixed_user or "", token=token)
        result = await server.process(await request.body(), context)
        if isinstance(result, StreamingResult):
            return StreamingResponse(result, media_type="text/event-stream")
        return Response(content=result.json, media_type="application/json")

    return app


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("psycopg", "chatstore"):
        sys.exit(__doc__)
    kind, port, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if kind == "psycopg":
        app = make_app(EchoServer(SeedPostgresStore(url)), fixed_user=BENCH_USER)
    else:
        from chatstore import ChatstoreStore

        store = ChatstoreStore(url, token_for=lambda context: context.token)
        app = make_app(EchoServer(store), fixed_user=None)
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
