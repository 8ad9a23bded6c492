"""The four Session methods directly: pop, clear, limits, errors, client ownership."""

from __future__ import annotations

import socket

import httpx
import pytest
from agents.memory import SessionSettings

from chatstore import ChatstoreConnectionError, ChatstoreError, ChatstoreSession


def numbered(n: int, start: int = 0) -> list[dict]:
    return [{"role": "user", "content": f"message {i}"} for i in range(start, start + n)]


class CountingTransport(httpx.AsyncBaseTransport):
    """Forwards to the real network and records every request."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_pop_returns_newest_and_removes_it(server, make_session) -> None:
    session = make_session("pop")
    items = numbered(3)
    await session.add_items(items)

    assert await session.pop_item() == items[2]
    assert server.stored_items("pop") == items[:2]
    assert await session.pop_item() == items[1]
    assert await session.pop_item() == items[0]
    assert server.stored_items("pop") == []
    # Empty (and never-used) sessions pop None, not an error.
    assert await session.pop_item() is None
    assert await make_session("never-used").pop_item() is None

    # The session is usable again after being emptied by pops.
    await session.add_items(numbered(1, start=10))
    assert server.stored_items("pop") == numbered(1, start=10)


async def test_clear_session_empties_it(server, make_session) -> None:
    session = make_session("clear")
    await session.add_items(numbered(4))
    other = make_session("clear-other")
    await other.add_items(numbered(2))

    await session.clear_session()
    assert await session.get_items() == []
    assert server.stored_items("clear") == []
    assert server.stored_items("clear-other") == numbered(2), "clear touched another session"
    # Clearing again, or an unknown session, is fine.
    await session.clear_session()
    await make_session("unknown").clear_session()
    assert server.stored_items("unknown") == []
    # Writing after a clear starts a fresh history.
    await session.add_items(numbered(2, start=5))
    assert await session.get_items() == numbered(2, start=5)


async def test_get_items_limits(server, make_session) -> None:
    session = make_session("limits")
    items = numbered(6)
    await session.add_items(items[:2])
    await session.add_items(items[2:5])
    await session.add_items(items[5:])
    assert server.stored_items("limits") == items

    assert await session.get_items() == items
    assert await session.get_items(None) == items
    assert await session.get_items(0) == []
    assert await session.get_items(1) == items[-1:]
    assert await session.get_items(4) == items[-4:]  # the tail, oldest first
    assert await session.get_items(6) == items
    assert await session.get_items(100) == items
    # The SDK's compaction passes 2**31 - 1; even larger values are clamped to 2**63 - 1.
    assert await session.get_items(2_147_483_647) == items
    assert await session.get_items(2**63 - 1) == items
    assert await session.get_items(2**80) == items
    # Documented client rule: a negative limit returns [] (like SimpleListSession and Redis).
    assert await session.get_items(-1) == []
    assert await session.get_items(-100) == []
    # The server's own answers for the same limits.
    assert server.stored_items("limits", limit=0) == []
    assert server.stored_items("limits", limit=4) == items[-4:]
    negative = server.request("GET", "/sessions/limits/items", params={"limit": -1})
    assert negative.status_code == 400
    assert negative.json()["error"]["code"] == "invalid_request"

    # An unknown session reads as empty.
    assert await make_session("nobody-here").get_items() == []
    assert await make_session("nobody-here").get_items(3) == []


async def test_session_settings_limit_fallback(server, make_session) -> None:
    items = numbered(5)
    await make_session("settings").add_items(items)

    limited = make_session("settings", session_settings=SessionSettings(limit=2))
    assert await limited.get_items() == items[-2:]  # None falls back to the settings
    assert await limited.get_items(3) == items[-3:]  # an explicit limit wins
    assert await limited.get_items(0) == []  # ... also 0
    limited.session_settings = SessionSettings(limit=None)
    assert await limited.get_items() == items

    assert await make_session("settings", session_settings={"limit": 4}).get_items() == items[-4:]
    assert await make_session("settings", session_settings={}).get_items() == items
    assert make_session("settings").session_settings == SessionSettings()
    with pytest.raises(TypeError, match="bogus"):  # the SDK rejects unknown keys
        make_session("settings", session_settings={"limit": 1, "bogus": True})


async def test_add_empty_batch_sends_nothing(server) -> None:
    transport = CountingTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        session = ChatstoreSession(
            "empty", base_url=server.url, token=server.token("alice"), client=client
        )
        await session.add_items([])
        assert transport.requests == []
        await session.add_items([{"role": "user", "content": "x"}])
        assert len(transport.requests) == 1
        sent = transport.requests[0]
        assert sent.method == "POST"
        assert sent.headers["content-type"] == "application/json"
        assert sent.headers["authorization"] == f"Bearer {server.token('alice')}"
        assert len(sent.headers["idempotency-key"]) == 36  # a uuid4
        # get_items(0) and negative limits need no request either.
        assert await session.get_items(0) == []
        assert len(transport.requests) == 1
    assert server.stored_items("empty") == [{"role": "user", "content": "x"}]


async def test_each_add_items_call_gets_its_own_idempotency_key(server) -> None:
    transport = CountingTransport()
    async with httpx.AsyncClient(transport=transport) as client:
        session = ChatstoreSession(
            "keys", base_url=server.url, token=server.token("alice"), client=client
        )
        same_batch = [{"role": "user", "content": "again"}]
        await session.add_items(same_batch)
        await session.add_items(same_batch)  # a legitimately repeated message
    keys = [request.headers["idempotency-key"] for request in transport.requests]
    assert len(keys) == 2 and keys[0] != keys[1]
    assert server.stored_items("keys") == same_batch * 2


async def test_errors_carry_status_and_code(server, make_session) -> None:
    bad_token = make_session("errors", token="not-a-jwt")
    with pytest.raises(ChatstoreError) as caught:
        await bad_token.get_items()
    assert caught.value.status_code == 401
    assert caught.value.code == "unauthorized"
    assert caught.value.message
    assert "401" in str(caught.value)

    for method in ("add_items", "pop_item", "clear_session"):
        args = ([{"a": 1}],) if method == "add_items" else ()
        with pytest.raises(ChatstoreError) as caught:
            await getattr(bad_token, method)(*args)
        assert (caught.value.status_code, caught.value.code) == (401, "unauthorized")

    too_long = make_session("x" * 256)
    with pytest.raises(ChatstoreError) as caught:
        await too_long.add_items([{"a": 1}])
    assert (caught.value.status_code, caught.value.code) == (400, "invalid_request")
    assert caught.value.request_id

    # Over the server's body limit (4 MiB by default): 413, not retried.
    with pytest.raises(ChatstoreError) as caught:
        await make_session("errors").add_items([{"blob": "x" * (5 * 1024 * 1024)}])
    assert (caught.value.status_code, caught.value.code) == (413, "payload_too_large")

    nul_id = make_session("nul\x00id")
    with pytest.raises(ChatstoreError) as caught:
        await nul_id.get_items()
    assert caught.value.status_code == 400

    # Refused client-side, before any request: non-objects, NaN, lone surrogates.
    session = make_session("errors")
    with pytest.raises(TypeError):
        await session.add_items(["not an object"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await session.add_items([{"x": float("nan")}])
    with pytest.raises(ValueError):
        await session.add_items([{"x": "\ud800"}])
    with pytest.raises(ValueError):
        ChatstoreSession("", base_url=server.url, token="t")
    assert server.stored_items("errors") == []


async def test_token_may_be_a_callable(server, make_session) -> None:
    calls: list[int] = []

    async def token() -> str:
        calls.append(1)
        return server.token("alice")

    session = make_session("callable-token", token=token)
    await session.add_items([{"a": 1}])
    assert await session.get_items() == [{"a": 1}]
    assert len(calls) == 2
    sync = make_session("callable-token", token=lambda: server.token("alice"))
    assert await sync.pop_item() == {"a": 1}


async def test_client_ownership(server) -> None:
    token = server.token("alice")
    async with httpx.AsyncClient() as client:
        async with ChatstoreSession("own", base_url=server.url, token=token, client=client) as s:
            await s.add_items([{"a": 1}])
        assert not client.is_closed, "a client that was passed in must stay open"
        # Two sessions can share one client.
        other = ChatstoreSession("own", base_url=server.url + "/", token=token, client=client)
        assert await other.get_items() == [{"a": 1}]
        await other.aclose()
        assert not client.is_closed

    own = ChatstoreSession("own", base_url=server.url, token=token)
    async with own:
        assert await own.get_items() == [{"a": 1}]
    assert own._client.is_closed, "the session's own client is closed by aclose()"


async def test_connection_refused_raises_connection_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session = ChatstoreSession(
        "s", base_url=f"http://127.0.0.1:{port}", token="t", max_retries=2, retry_backoff=0.01
    )
    async with session:
        with pytest.raises(ChatstoreConnectionError) as caught:
            await session.get_items()
    assert caught.value.status_code is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "3 attempts" in str(caught.value)
