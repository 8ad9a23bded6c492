"""The Agents SDK's ``SQLiteSession`` doing chatstore-bench's turn, for the embedded table.

A turn is what one agent run does with its memory: ``get_items(limit=50)``, then
``add_items`` of 2 items, on one of SESSIONS sessions that share one SQLite file (as an app's
sessions do). CLIENTS asyncio tasks run turns for SECONDS, each picking sessions in the same
reproducible order as chatstore-bench's clients.

    python sqlite_session_turns.py load DB SESSIONS HISTORY
    python sqlite_session_turns.py run DB SESSIONS CLIENTS SECONDS

``run`` prints one JSON line: {"turns", "elapsed", "p50_us", "p99_us"}. The SDK is used as
shipped: one ``SQLiteSession`` per session id, its own schema, WAL, its per-file lock.
"""

import asyncio
import json
import sys
import time

from agents import SQLiteSession

USER_ITEM = {
    "role": "user",
    "content": "What did we discuss about the dragon campaign earlier today?",
}
ASSISTANT_ITEM = {
    "role": "assistant",
    "content": "We planned a three-act campaign: the siege, the betrayal and the dragon lair. "
    "Next you wanted to flesh out the villain.",
}
MASK = (1 << 64) - 1


def next_state(state: int) -> int:
    """chatstore-bench's xorshift, so both pick sessions in the same order."""
    state ^= (state << 13) & MASK
    state ^= state >> 7
    state ^= (state << 17) & MASK
    return state


def open_sessions(db: str, count: int) -> list[SQLiteSession]:
    return [SQLiteSession(f"s{n}", db) for n in range(count)]


async def load(db: str, count: int, history: int) -> None:
    items = [USER_ITEM if n % 2 == 0 else ASSISTANT_ITEM for n in range(history)]
    for session in open_sessions(db, count):
        await session.add_items(items)
        session.close()


async def run(db: str, count: int, clients: int, seconds: float) -> None:
    sessions = open_sessions(db, count)
    deadline = time.monotonic() + seconds
    latencies: list[float] = []

    async def client(index: int) -> None:
        state = 0x9E3779B97F4A7C15 ^ (index + 1)
        while time.monotonic() < deadline:
            state = next_state(state)
            session = sessions[state % count]
            started = time.perf_counter()
            await session.get_items(limit=50)
            await session.add_items([USER_ITEM, ASSISTANT_ITEM])
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.monotonic() - started
    for session in sessions:
        session.close()
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[round((len(latencies) - 1) * p)] * 1e6 if latencies else 0.0

    print(
        json.dumps(
            {
                "turns": len(latencies),
                "elapsed": elapsed,
                "p50_us": percentile(0.5),
                "p99_us": percentile(0.99),
            }
        )
    )


def main() -> None:
    command, db = sys.argv[1], sys.argv[2]
    if command == "load":
        asyncio.run(load(db, int(sys.argv[3]), int(sys.argv[4])))
    elif command == "run":
        asyncio.run(run(db, int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
