"""Concurrent writers and poppers on one session (bounded, loopback only)."""

from __future__ import annotations

import asyncio

import httpx

from chatstore import ChatstoreSession

WRITERS = 8
BATCH_SIZE = 5


async def test_concurrent_batches_stay_contiguous(server) -> None:
    token = server.token("alice")
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=WRITERS)) as client:
        sessions = [
            ChatstoreSession("busy", base_url=server.url, token=token, client=client)
            for _ in range(WRITERS)
        ]
        await asyncio.gather(
            *(
                session.add_items([{"writer": w, "i": i} for i in range(BATCH_SIZE)])
                for w, session in enumerate(sessions)
            )
        )
        items = await sessions[0].get_items()

    assert len(items) == WRITERS * BATCH_SIZE
    assert server.stored_items("busy") == items
    # Each batch is contiguous and in its own order; no batch is lost or interleaved.
    batches = [items[start : start + BATCH_SIZE] for start in range(0, len(items), BATCH_SIZE)]
    writers = []
    for batch in batches:
        writer = batch[0]["writer"]
        assert batch == [{"writer": writer, "i": i} for i in range(BATCH_SIZE)]
        writers.append(writer)
    assert sorted(writers) == list(range(WRITERS))


async def test_concurrent_pops_never_return_the_same_item(server, make_session) -> None:
    items = [{"n": n} for n in range(20)]
    await make_session("pops").add_items(items)
    token = server.token("alice")
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=10)) as client:
        session = ChatstoreSession("pops", base_url=server.url, token=token, client=client)
        popped = await asyncio.gather(*(session.pop_item() for _ in range(25)))

    got = [item for item in popped if item is not None]
    assert popped.count(None) == 5
    assert sorted(item["n"] for item in got) == list(range(20))
    assert server.stored_items("pops") == []
