"""Items come back exactly as given; awkward session ids work."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

AWKWARD_ITEMS = [
    {"role": "user", "content": "こんにちは, привет, 🦀👩‍👩‍👧 and \U0001f600"},
    {"type": "function_call_output", "call_id": "c1", "output": "before\u0000after"},
    {"nul_key_\u0000": "\u0000", "tabs\tand\nnewlines": '\r\n\t"quoted" \\ back\\slash'},
    {"big": 2**100, "negative_big": -(2**80), "i64_max": 2**63 - 1, "u64_max": 2**64 - 1},
    {"float": 0.1, "exp": 1e-300, "negative_zero": -0.0, "int_like": 3.0},
    {
        "nested": {"a": [1, [2, [3, {"b": None}]], {}], "c": {"d": {"e": {"f": [True, False]}}}},
        "empty_list": [],
        "empty_object": {},
        "null": None,
    },
    {"arguments": '{"city":"Z\\u00fcrich","n":1}', "type": "function_call"},
    {"": "empty key", "👍": "emoji key", "line\u2028separator": "\u2029"},
    {"role": "user", "content": "x" * 100_000},
]


def _strict_equal(left: object, right: object) -> bool:
    """Equality that also distinguishes 1 from 1.0 and True from 1 (json types must survive)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(  # type: ignore[union-attr]
            _strict_equal(left[k], right[k])
            for k in left  # type: ignore[index]
        )
    if isinstance(left, list):
        return len(left) == len(right) and all(  # type: ignore[arg-type]
            _strict_equal(a, b)
            for a, b in zip(left, right, strict=True)  # type: ignore[call-overload]
        )
    if isinstance(left, float) and left == 0.0:
        return str(left) == str(right)  # keep the sign of zero
    return left == right


async def test_items_round_trip_exactly(server, make_session) -> None:
    session = make_session("fidelity")
    await session.add_items(AWKWARD_ITEMS)

    got = await session.get_items()
    assert got == AWKWARD_ITEMS
    assert _strict_equal(got, AWKWARD_ITEMS)
    assert got[3]["big"] == 1267650600228229401496703205376
    assert got[1]["output"] == "before\x00after"

    # The raw server response, parsed independently, holds the same values.
    raw = server.request("GET", "/sessions/fidelity/items")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    assert _strict_equal(json.loads(raw.content)["items"], AWKWARD_ITEMS)

    # Tail reads and pops return the same exact values.
    assert _strict_equal(await session.get_items(2), AWKWARD_ITEMS[-2:])
    assert _strict_equal(await session.pop_item(), AWKWARD_ITEMS[-1])
    assert _strict_equal(await session.pop_item(), AWKWARD_ITEMS[-2])
    assert _strict_equal(server.stored_items("fidelity"), AWKWARD_ITEMS[:-2])


async def test_ascii_escaped_json_from_other_clients_reads_back_equal(server, make_session) -> None:
    # Python's default json.dumps (ensure_ascii=True, like SQLiteSession) escapes non-ASCII.
    body = json.dumps({"items": AWKWARD_ITEMS[:4]})
    response = server.request(
        "POST",
        "/sessions/escaped/items",
        content=body.encode("ascii"),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"added": 4}
    assert _strict_equal(await make_session("escaped").get_items(), AWKWARD_ITEMS[:4])


AWKWARD_IDS = [
    "a/b",
    "a%2Fb",
    "100%",
    "%",
    "with space",
    "  leading and trailing  ",
    "emoji 🦀🎉",
    "ünïcødé/日本語",
    "?query=1&x#frag",
    "+plus+",
    ".",
    "..",
    "../escape",
    "back\\slash",
    "é" * 127,  # 254 bytes
    "x" * 255,  # the longest allowed
]


@pytest.mark.parametrize("session_id", AWKWARD_IDS, ids=lambda s: repr(s)[:24])
async def test_awkward_session_ids(server, make_session, session_id: str) -> None:
    session = make_session(session_id)
    items = [{"id": session_id, "n": 1}, {"id": session_id, "n": 2}]
    await session.add_items(items)
    assert await session.get_items() == items
    # The server filed them under exactly this id (checked by a raw request, and by another
    # session object for the same id).
    assert server.stored_items(session_id) == items
    assert await make_session(session_id).get_items(1) == items[-1:]
    assert await session.pop_item() == items[1]
    await session.clear_session()
    assert server.stored_items(session_id) == []


async def test_similar_ids_are_different_sessions(server, make_session) -> None:
    ids = ["a/b", "a%2Fb", "a b", "a+b", "a", "b", ".", "..", "%2E"]
    for index, session_id in enumerate(ids):
        await make_session(session_id).add_items([{"index": index}])
    for index, session_id in enumerate(ids):
        assert await make_session(session_id).get_items() == [{"index": index}], session_id
        assert server.stored_items(session_id) == [{"index": index}], session_id
    # Raw path check: "a/b" percent-encoded is one path segment.
    assert quote("a/b", safe="") == "a%2Fb"
