"""``ChatstoreAdvancedSession`` against the SDK's ``AdvancedSQLiteSession``: one scenario run
on both gives the same answers and the same exceptions (timestamps aside), on both databases;
and a second process sees the first one's branches and usage."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

from agents.extensions.memory import AdvancedSQLiteSession
from agents.usage import InputTokensDetails, OutputTokensDetails, Usage

from chatstore import ChatstoreAdvancedSession

TIMESTAMPS = ("created_at", "timestamp")


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def run_result(requests: int, input_tokens: int, output_tokens: int) -> Any:
    usage = Usage(
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=1, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=2),
    )
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


def without_timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timestamps(v) for k, v in value.items() if k not in TIMESTAMPS}
    if isinstance(value, (list, tuple)):
        return type(value)(without_timestamps(v) for v in value)
    return value


async def scenario(session: Any) -> list[Any]:
    """Every public method, in an order that exercises branches, turns and usage; each step's
    answer or exception (type and message) is recorded."""
    log: list[Any] = []

    async def step(name: str, call: Any) -> None:
        try:
            answer = await call
        except Exception as exc:  # noqa: BLE001 - recorded and compared
            log.append((name, "raised", type(exc).__name__, str(exc)))
        else:
            if name.startswith("list"):
                # Ordered by creation time, which is a timestamp: compare as a set.
                answer = sorted(answer, key=lambda branch: branch["branch_id"])
            log.append((name, without_timestamps(answer)))

    await step("add 1", session.add_items([user("hello"), assistant("hi")]))
    await step("usage 1", session.store_run_usage(run_result(1, 10, 5)))
    await step(
        "add 2",
        session.add_items(
            [
                user("What is the WEATHER?"),
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c2", "output": "sunny"},
                assistant("sunny"),
            ]
        ),
    )
    await step("usage 2", session.store_run_usage(run_result(2, 20, 7)))
    await step(
        "add 3",
        session.add_items(
            [{"role": "user", "content": [{"type": "input_text", "text": "bye " * 40}]}]
        ),
    )
    for branch in (None, "main"):
        await step("turns", session.get_conversation_turns(branch))
        await step("by turns", session.get_conversation_by_turns(branch))
        await step("tools", session.get_tool_usage(branch))
    await step("find", session.find_turns_by_content("weather"))
    await step("find none", session.find_turns_by_content("zzz"))
    await step("find all", session.find_turns_by_content(""))
    await step("items", session.get_items())
    await step("items 2", session.get_items(limit=2))
    await step("list", session.list_branches())

    await step("fork", session.create_branch_from_turn(2, "alt"))
    await step("items on alt", session.get_items())
    await step("list on alt", session.list_branches())
    await step("add on alt", session.add_items([user("another question"), assistant("ok")]))
    await step("usage on alt", session.store_run_usage(run_result(3, 30, 9)))
    await step("items on alt 2", session.get_items(limit=3))
    await step("main items", session.get_items(branch_id="main"))
    await step("alt turns", session.get_conversation_turns())
    await step("alt tools", session.get_tool_usage())

    await step("bad turn", session.create_branch_from_turn(99, "x"))
    await step("reused name", session.create_branch_from_turn(1, "alt"))
    await step("blank name", session.create_branch_from_turn(1, "  "))
    await step("no content", session.create_branch_from_content("nothing like this"))
    await step("switch missing", session.switch_to_branch("nope"))
    await step("delete main", session.delete_branch("main"))
    await step("delete current", session.delete_branch("alt"))
    await step("delete blank", session.delete_branch(" "))
    await step("delete missing", session.delete_branch("nope"))

    await step("session usage", session.get_session_usage())
    await step("alt usage", session.get_session_usage("alt"))
    await step("turn usage", session.get_turn_usage())
    await step("turn usage 2", session.get_turn_usage(2))
    await step("turn usage main 1", session.get_turn_usage(1, "main"))
    await step("turn usage none", session.get_turn_usage(9))

    await step("switch main", session.switch_to_branch("main"))
    await step("delete alt", session.delete_branch("alt"))
    await step("list after delete", session.list_branches())
    await step("reserved", session.create_branch_from_turn(1, "alt"))
    await step("usage after delete", session.get_session_usage())
    await step("from content", session.create_branch_from_content("weather", "w2"))
    await step("w2 items", session.get_items())
    await step("w2 pop", session.pop_item())
    await step("w2 items 2", session.get_items())
    await step("main untouched", session.get_items(branch_id="main"))
    await step("force delete", session.delete_branch("w2", force=True))
    await step("list after force", session.list_branches())
    await step("pop main", session.pop_item())
    await step("clear", session.clear_session())
    await step("items after clear", session.get_items())
    await step("list after clear", session.list_branches())
    await step("usage after clear", session.get_session_usage())
    await step("reserved after clear", session.create_branch_from_turn(1, "alt"))
    return log


async def test_same_answers_as_advanced_sqlite_session(server, tmp_path) -> None:
    reference = AdvancedSQLiteSession(
        session_id="adv", db_path=str(tmp_path / "sdk.db"), create_tables=True
    )
    try:
        expected = await scenario(reference)
    finally:
        reference.close()
    async with ChatstoreAdvancedSession(
        "adv", base_url=server.url, token=server.token("alice")
    ) as session:
        actual = await scenario(session)
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got == want
    # Bob's session of the same id saw none of it.
    async with ChatstoreAdvancedSession(
        "adv", base_url=server.url, token=server.token("bob")
    ) as bob:
        assert await bob.list_branches() == []
        assert await bob.get_session_usage() is None


async def test_a_second_process_sees_branches_and_usage(server) -> None:
    async with ChatstoreAdvancedSession(
        "shared", base_url=server.url, token=server.token("alice")
    ) as session:
        await session.add_items([user("one"), assistant("1"), user("two"), assistant("2")])
        await session.store_run_usage(run_result(1, 10, 5))
        await session.create_branch_from_turn(2, "alt")
        await session.add_items([user("three")])
    script = textwrap.dedent(
        f"""
        import asyncio, json
        from chatstore import ChatstoreAdvancedSession

        async def main():
            async with ChatstoreAdvancedSession(
                "shared", base_url={server.url!r}, token={server.token("alice")!r}
            ) as session:
                branches = await session.list_branches()
                usage = await session.get_session_usage()
                await session.switch_to_branch("alt")
                items = await session.get_items()
                print(json.dumps({{"branches": branches, "usage": usage, "items": items}}))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # Both branches, and a new instance starts on main.
    current = {branch["branch_id"]: branch["is_current"] for branch in seen["branches"]}
    assert current == {"main": True, "alt": False}
    assert seen["usage"] == {
        "requests": 1,
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "total_turns": 1,
    }
    assert seen["items"] == [user("one"), assistant("1"), user("three")]
