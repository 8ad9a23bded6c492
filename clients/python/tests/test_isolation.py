"""Sessions and users do not see or touch each other's items."""

from __future__ import annotations


async def test_two_sessions_stay_apart(server, make_session) -> None:
    first = make_session("chat-1")
    second = make_session("chat-2")
    await first.add_items([{"role": "user", "content": "one"}])
    await second.add_items([{"role": "user", "content": "two"}])
    await first.add_items([{"role": "user", "content": "one again"}])

    assert await first.get_items() == [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "one again"},
    ]
    assert await second.get_items() == [{"role": "user", "content": "two"}]

    assert await second.pop_item() == {"role": "user", "content": "two"}
    assert await second.pop_item() is None
    assert len(server.stored_items("chat-1")) == 2

    await first.clear_session()
    await second.add_items([{"n": 2}])
    assert server.stored_items("chat-1") == []
    assert server.stored_items("chat-2") == [{"n": 2}]


async def test_same_session_id_under_two_users_stays_apart(server, make_session) -> None:
    alice = make_session("shared-id", user="alice")
    bob = make_session("shared-id", user="bob")
    await alice.add_items([{"owner": "alice", "i": 0}, {"owner": "alice", "i": 1}])
    await bob.add_items([{"owner": "bob", "i": 0}])

    assert await alice.get_items() == [{"owner": "alice", "i": 0}, {"owner": "alice", "i": 1}]
    assert await bob.get_items() == [{"owner": "bob", "i": 0}]
    assert server.stored_items("shared-id", user="alice") == await alice.get_items()
    assert server.stored_items("shared-id", user="bob") == [{"owner": "bob", "i": 0}]

    # Bob's pop and clear never reach Alice's items.
    assert await bob.pop_item() == {"owner": "bob", "i": 0}
    assert await bob.pop_item() is None
    await bob.clear_session()
    assert server.stored_items("shared-id", user="alice") == [
        {"owner": "alice", "i": 0},
        {"owner": "alice", "i": 1},
    ]

    # Alice's items are invisible to a third user, whose session id collides as well.
    assert await make_session("shared-id", user="carol").get_items() == []
    await alice.clear_session()
    await bob.add_items([{"owner": "bob", "i": 1}])
    assert server.stored_items("shared-id", user="alice") == []
    assert server.stored_items("shared-id", user="bob") == [{"owner": "bob", "i": 1}]
