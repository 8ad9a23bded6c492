"""Atomic compaction: the SDK's ``OpenAIResponsesCompactionSession`` over ``ChatstoreSession``,
which offers the SDK's private ``_get_compaction_snapshot`` hook, against a fake Responses API
(``responses.compact`` answered in-process by an ``httpx`` mock transport)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from agents import Agent, RunConfig, Runner
from agents.memory import OpenAIResponsesCompactionSession
from agents.testing import ScriptedModel, assistant_message
from openai import AsyncOpenAI

from chatstore import ChatstoreSession

RUN_CONFIG = RunConfig(tracing_disabled=True)
SUMMARY = {"type": "compaction", "encrypted_content": "summary-1"}


def fake_responses_api(
    on_compact: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[AsyncOpenAI, list[dict[str, Any]]]:
    """An OpenAI client whose ``POST /responses/compact`` answers one compaction item (after
    calling ``on_compact`` with the request), recording every request it got."""
    requests: list[dict[str, Any]] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        requests.append({"path": request.url.path, "body": body})
        if request.url.path.endswith("/responses/compact"):
            if on_compact is not None:
                await on_compact(body)
            return httpx.Response(
                200,
                json={
                    "id": "cmp_1",
                    "object": "response.compaction",
                    "created_at": int(time.time()),
                    "output": [{**SUMMARY, "id": "cmp_item_1"}],
                    "usage": {
                        "input_tokens": 10,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens": 2,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": 12,
                    },
                },
            )
        return httpx.Response(404, json={"error": {"message": "not faked"}})

    client = AsyncOpenAI(
        api_key="test",
        base_url="http://fake-openai.invalid/v1",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handle)),
    )
    return client, requests


def spy_snapshots(session: ChatstoreSession) -> list[int]:
    calls: list[int] = []
    original = session._get_compaction_snapshot

    async def spy(limit: int, **kwargs: Any) -> Any:
        calls.append(limit)
        return await original(limit, **kwargs)

    session._get_compaction_snapshot = spy  # type: ignore[method-assign]
    return calls


def user(text: str) -> dict[str, Any]:
    return {"content": text, "role": "user"}


def compaction_session(
    underlying: ChatstoreSession, client: AsyncOpenAI, trigger: list[bool]
) -> OpenAIResponsesCompactionSession:
    """Compacts after a run whenever ``trigger[0]`` is true."""
    return OpenAIResponsesCompactionSession(
        session_id=underlying.session_id,
        underlying_session=underlying,
        client=client,
        compaction_mode="input",
        should_trigger_compaction=lambda context: trigger[0],
    )


async def test_compaction_replaces_the_tail_atomically(server, make_session) -> None:
    underlying = make_session("compact")
    snapshots = spy_snapshots(underlying)
    client, requests = fake_responses_api()
    trigger = [False]
    session = compaction_session(underlying, client, trigger)
    model = ScriptedModel(
        [
            [assistant_message("first answer", item_id="msg_1")],
            [assistant_message("second answer", item_id="msg_2")],
        ]
    )
    agent = Agent(name="a", model=model)
    await Runner.run(agent, "first", session=session, run_config=RUN_CONFIG)
    first_turn = server.stored_items("compact")
    assert len(first_turn) == 2
    trigger[0] = True
    await Runner.run(agent, "second", session=session, run_config=RUN_CONFIG)

    assert snapshots, "the runner's automatic compaction used the snapshot hook"
    compacts = [r for r in requests if r["path"].endswith("/responses/compact")]
    assert len(compacts) == 1
    # The whole stored history was replaced by the compaction output, in one step.
    stored = server.stored_items("compact")
    assert stored == [{**SUMMARY, "id": "cmp_item_1"}]
    assert server.stored_items("compact", limit=5) == stored
    chat = server.request("GET", "/chats/compact").json()
    assert chat["item_count"] == 1
    assert chat["conversation"] == stored
    # Later turns append after it.
    await underlying.add_items([user("third")])
    assert await underlying.get_items(limit=1) == [user("third")]
    assert server.request("GET", "/chats/compact").json()["item_count"] == 2


async def test_an_item_added_during_compaction_is_kept(server, make_session) -> None:
    underlying = make_session("racy")
    other = make_session("racy")
    late = user("written by another process while compacting")

    async def add_concurrently(_body: dict[str, Any]) -> None:
        await other.add_items([late])

    client, requests = fake_responses_api(add_concurrently)
    session = compaction_session(underlying, client, [True])
    snapshot_results: list[bool] = []
    original = underlying._get_compaction_snapshot

    async def recording(limit: int, **kwargs: Any) -> Any:
        snap = await original(limit, **kwargs)
        replace = snap.replace_suffix

        async def replace_suffix(start: int, items: list[Any]) -> bool:
            result = await replace(start, items)
            snapshot_results.append(result)
            return result

        return dataclasses.replace(snap, replace_suffix=replace_suffix)

    underlying._get_compaction_snapshot = recording  # type: ignore[method-assign]
    model = ScriptedModel([[assistant_message("answer", item_id="msg_1")]])
    await Runner.run(Agent(name="a", model=model), "question", session=session, run_config=RUN_CONFIG)

    assert any(r["path"].endswith("/responses/compact") for r in requests)
    assert snapshot_results == [False]
    stored = server.stored_items("racy")
    assert stored[0] == user("question")
    assert stored[-1] == late
    assert len(stored) == 3
    assert all(item.get("type") != "compaction" for item in stored)
    assert server.request("GET", "/chats/racy").json()["item_count"] == 3


def expired(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "expired": True}


async def test_prefix_prune_removes_exactly_the_accepted_leading_items(
    server, make_session
) -> None:
    session = make_session("prune")
    history = [
        expired("e1"),
        expired("e2"),
        user("kept"),
        expired("e3 (not leading)"),
        user("old tail"),
        user("newest"),
    ]
    await session.add_items(history)
    snap = await session._get_compaction_snapshot(
        2, prune_prefix=lambda item: bool(item.get("expired"))
    )
    assert snap is not None
    assert snap.items == history[-2:]
    assert snap.complete is False
    assert await snap.replace_suffix(0, [SUMMARY]) is True
    expected = [user("kept"), expired("e3 (not leading)"), SUMMARY]
    assert server.stored_items("prune") == expected
    assert server.stored_items("prune", limit=2) == expected[1:]
    assert server.request("GET", "/chats/prune").json()["item_count"] == 3
    # The snapshot was used: a second replace from it is refused and changes nothing.
    assert await snap.replace_suffix(0, []) is False
    assert server.stored_items("prune") == expected

    # A whole-history snapshot is complete; an empty tail replaces nothing.
    snap = await session._get_compaction_snapshot(10)
    assert snap.complete is True and snap.items == expected
    assert await snap.replace_suffix(3, []) is False
    # Another user's session of the same id is untouched by all this.
    assert server.stored_items("prune", user="bob") == []
