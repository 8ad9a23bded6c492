"""Retries never duplicate a batch: one Idempotency-Key per add_items call, kept across retries."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from chatstore import ChatstoreConnectionError, ChatstoreError, ChatstoreSession

BATCH = [
    {"role": "user", "content": "hello"},
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "ok"},
]


class FaultyTransport(httpx.AsyncBaseTransport):
    """Forwards to the real server; ``fault(request, index)`` may inject a failure.

    A fault is ``"lose-response"`` (the server handles the request, then the client sees a
    connection reset), ``"503"`` (answered here without reaching the server), or ``None``.
    """

    def __init__(self, fault) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.fault = fault
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = len(self.requests)
        self.requests.append(request)
        self.bodies.append(await request.aread())
        fault = self.fault(request, index)
        if fault == "503":
            return httpx.Response(
                503,
                headers={"Retry-After": "0", "x-request-id": "injected"},
                json={"error": {"code": "unavailable", "message": "database unreachable"}},
            )
        response = await self.inner.handle_async_request(request)
        if fault == "lose-response":
            await response.aread()  # the server has answered, so it has committed
            await response.aclose()
            raise httpx.ReadError("connection reset by peer (injected)", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def session_with(
    server, transport, session_id: str, **kwargs
) -> tuple[ChatstoreSession, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=transport)
    session = ChatstoreSession(
        session_id,
        base_url=server.url,
        token=server.token("alice"),
        client=client,
        retry_backoff=0.01,
        **kwargs,
    )
    return session, client


async def test_lost_response_after_commit_is_retried_without_duplicates(server) -> None:
    transport = FaultyTransport(lambda request, index: "lose-response" if index == 0 else None)
    session, client = session_with(server, transport, "retry-lost")
    async with client:
        await session.add_items(BATCH)

    # The first attempt committed on the server; its answer was lost; the retry added nothing.
    assert server.stored_items("retry-lost") == BATCH
    assert len(transport.requests) == 2
    first, second = transport.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert transport.bodies[0] == transport.bodies[1]

    # A later call is a new batch with a new key.
    async with httpx.AsyncClient(transport=transport) as client:
        session._client = client
        await session.add_items(BATCH[:1])
    assert transport.requests[2].headers["idempotency-key"] != first.headers["idempotency-key"]
    assert server.stored_items("retry-lost") == BATCH + BATCH[:1]


async def test_503_is_retried_with_the_same_key(server) -> None:
    transport = FaultyTransport(lambda request, index: "503" if index < 2 else None)
    session, client = session_with(server, transport, "retry-503")
    async with client:
        await session.add_items(BATCH)
    assert len(transport.requests) == 3
    assert len({r.headers["idempotency-key"] for r in transport.requests}) == 1
    assert server.stored_items("retry-503") == BATCH


async def test_retries_are_bounded(server) -> None:
    transport = FaultyTransport(lambda request, index: "503")
    session, client = session_with(server, transport, "retry-bounded", max_retries=2)
    async with client:
        with pytest.raises(ChatstoreError) as caught:
            await session.add_items(BATCH)
        assert (caught.value.status_code, caught.value.code) == (503, "unavailable")
        assert caught.value.request_id == "injected"
        assert len(transport.requests) == 3

        no_retry, _ = session_with(server, transport, "retry-bounded", max_retries=0)
        no_retry._client = client
        with pytest.raises(ChatstoreError):
            await no_retry.get_items()
        assert len(transport.requests) == 4
    assert server.stored_items("retry-bounded") == []


async def test_reads_and_clears_are_retried(server) -> None:
    await_seen: list[str] = []

    def fault(request: httpx.Request, index: int):
        await_seen.append(request.method)
        return "lose-response" if index in (1, 3) else None

    transport = FaultyTransport(fault)
    session, client = session_with(server, transport, "retry-read")
    async with client:
        await session.add_items(BATCH)  # request 0
        assert await session.get_items() == BATCH  # requests 1 (lost) and 2
        await session.clear_session()  # requests 3 (lost) and 4
    assert await_seen == ["POST", "GET", "GET", "DELETE", "DELETE"]
    assert server.stored_items("retry-read") == []


async def test_pop_is_never_retried(server, make_session) -> None:
    await make_session("retry-pop").add_items(BATCH)
    transport = FaultyTransport(lambda request, index: "lose-response")
    session, client = session_with(server, transport, "retry-pop")
    async with client:
        with pytest.raises(ChatstoreConnectionError) as caught:
            await session.pop_item()
    assert isinstance(caught.value.__cause__, httpx.ReadError)
    # Exactly one pop reached the server: one item gone, not several.
    assert len(transport.requests) == 1
    assert server.stored_items("retry-pop") == BATCH[:2]


async def test_same_idempotency_key_twice_over_raw_http(server) -> None:
    body = {"items": BATCH}
    headers = {"Idempotency-Key": "batch-key-1"}
    first = server.request("POST", "/sessions/raw-key/items", json=body, headers=headers)
    second = server.request("POST", "/sessions/raw-key/items", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"added": 3}
    assert server.stored_items("raw-key") == BATCH

    # The same key with a different batch is a conflict, and changes nothing.
    other = server.request(
        "POST", "/sessions/raw-key/items", json={"items": BATCH[:1]}, headers=headers
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "conflict"
    assert server.stored_items("raw-key") == BATCH

    # Keys are scoped per session and per user.
    again = server.request("POST", "/sessions/raw-key-2/items", json=body, headers=headers)
    assert again.status_code == 200 and again.json() == {"added": 3}
    bob = server.request("POST", "/sessions/raw-key/items", json=body, headers=headers, user="bob")
    assert bob.status_code == 200 and bob.json() == {"added": 3}
    assert server.stored_items("raw-key-2") == BATCH
    assert server.stored_items("raw-key", user="bob") == BATCH
    assert server.stored_items("raw-key") == BATCH


async def test_cancelled_add_items_settles_before_cancelling(server) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    class SlowTransport(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            entered.set()
            await release.wait()
            return await super().handle_async_request(request)

    session, client = session_with(server, SlowTransport(), "cancelled")
    async with client:
        task = asyncio.create_task(session.add_items(BATCH))
        await entered.wait()
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done(), "add_items returned before its request finished"
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    # The write went through even though the caller was cancelled.
    assert server.stored_items("cancelled") == BATCH
