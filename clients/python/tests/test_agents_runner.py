"""The real Agents SDK runner with ChatstoreSession as its memory (ScriptedModel, offline)."""

from __future__ import annotations

import json
from typing import Any

from agents import Agent, RunConfig, Runner, function_tool
from agents.memory import Session, SessionSettings
from agents.testing import ScriptedModel, assistant_message, function_call

from chatstore import ChatstoreSession

RUN_CONFIG = RunConfig(tracing_disabled=True)


def user(text: str) -> dict[str, Any]:
    """A user turn exactly as the runner stores a plain-string input."""
    return {"content": text, "role": "user"}


def assistant(text: str, item_id: str) -> dict[str, Any]:
    """An assistant message as the runner stores ``assistant_message(text, item_id=...)``."""
    return {
        "id": item_id,
        "content": [{"annotations": [], "text": text, "type": "output_text", "logprobs": []}],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    }


def test_satisfies_the_session_protocol() -> None:
    session = ChatstoreSession("s", base_url="http://127.0.0.1:9", token="t")
    assert isinstance(session, Session)
    assert session.session_id == "s"
    assert session.session_settings == SessionSettings()


async def test_runner_remembers_across_runs(server, make_session) -> None:
    session = make_session("memory")
    model = ScriptedModel(
        [
            [assistant_message("Nice to meet you, Ada.", item_id="msg_1")],
            [assistant_message("Your name is Ada.", item_id="msg_2")],
        ]
    )
    agent = Agent(name="assistant", instructions="Be brief.", model=model)

    first = await Runner.run(agent, "My name is Ada", session=session, run_config=RUN_CONFIG)
    assert first.final_output == "Nice to meet you, Ada."
    assert model.calls[0].input == [user("My name is Ada")]

    second = await Runner.run(agent, "What is my name?", session=session, run_config=RUN_CONFIG)
    assert second.final_output == "Your name is Ada."
    model.assert_complete()
    assert len(model.calls) == 2
    # The model saw the earlier exchange, then the new question.
    assert model.calls[-1].input == [
        user("My name is Ada"),
        assistant("Nice to meet you, Ada.", "msg_1"),
        user("What is my name?"),
    ]

    expected = [
        user("My name is Ada"),
        assistant("Nice to meet you, Ada.", "msg_1"),
        user("What is my name?"),
        assistant("Your name is Ada.", "msg_2"),
    ]
    # What the server stored, read over raw HTTP, and what the session reads back.
    assert server.stored_items("memory") == expected
    assert await session.get_items() == expected

    # A new session object on the same id (e.g. another process) continues the conversation.
    model.enqueue([assistant_message("Still Ada.", item_id="msg_3")])
    again = make_session("memory")
    await Runner.run(agent, "And now?", session=again, run_config=RUN_CONFIG)
    assert model.calls[-1].input == expected + [user("And now?")]
    assert server.stored_items("memory") == expected + [
        user("And now?"),
        assistant("Still Ada.", "msg_3"),
    ]


async def test_session_settings_limit_trims_model_input(server, make_session) -> None:
    session = make_session("limited", session_settings=SessionSettings(limit=2))
    model = ScriptedModel(
        [
            [assistant_message("Hi Ada.", item_id="msg_1")],
            [assistant_message("Paris is lovely.", item_id="msg_2")],
            [assistant_message("In Paris.", item_id="msg_3")],
            [assistant_message("You asked where you live.", item_id="msg_4")],
        ]
    )
    agent = Agent(name="assistant", model=model)

    await Runner.run(agent, "My name is Ada", session=session, run_config=RUN_CONFIG)
    assert model.calls[-1].input == [user("My name is Ada")]

    await Runner.run(agent, "I live in Paris", session=session, run_config=RUN_CONFIG)
    assert model.calls[-1].input == [
        user("My name is Ada"),
        assistant("Hi Ada.", "msg_1"),
        user("I live in Paris"),
    ]

    await Runner.run(agent, "Where do I live?", session=session, run_config=RUN_CONFIG)
    # limit=2: only the newest two stored items, then the new input.
    assert len(model.calls[-1].input) == 3
    assert model.calls[-1].input == [
        user("I live in Paris"),
        assistant("Paris is lovely.", "msg_2"),
        user("Where do I live?"),
    ]

    # RunConfig.session_settings overrides the session's own limit for one run.
    override = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=1))
    await Runner.run(agent, "What did I ask?", session=session, run_config=override)
    assert model.calls[-1].input == [assistant("In Paris.", "msg_3"), user("What did I ask?")]
    model.assert_complete()

    # The limit trims what the model sees, never what is stored.
    stored = server.stored_items("limited")
    assert len(stored) == 8
    assert stored[-2:] == [user("What did I ask?"), assistant("You asked where you live.", "msg_4")]
    # get_items() without a limit falls back to the session's limit; an explicit one wins.
    assert await session.get_items() == stored[-2:]
    assert await session.get_items(limit=5) == stored[-5:]
    assert await session.get_items(limit=0) == []


async def test_dict_session_settings_limit(server, make_session) -> None:
    session = make_session("dict-limit", session_settings={"limit": 1})
    assert session.session_settings == SessionSettings(limit=1)
    model = ScriptedModel(
        [
            [assistant_message("one", item_id="msg_1")],
            [assistant_message("two", item_id="msg_2")],
        ]
    )
    agent = Agent(name="assistant", model=model)
    await Runner.run(agent, "first", session=session, run_config=RUN_CONFIG)
    await Runner.run(agent, "second", session=session, run_config=RUN_CONFIG)
    assert model.calls[-1].input == [assistant("one", "msg_1"), user("second")]
    assert len(server.stored_items("dict-limit")) == 4


async def test_tool_call_and_output_round_trip(server, make_session) -> None:
    session = make_session("tools")
    seen: list[tuple[str, list[int]]] = []

    @function_tool
    def forecast(city: str, days: list[int]) -> str:
        """Weather forecast for a city."""
        seen.append((city, days))
        return json.dumps({"city": city, "sky": "sunny ☀", "days": days}, ensure_ascii=False)

    # Exact argument text, including non-ASCII and a nested array, must survive storage.
    arguments = '{"city":"Zürich","days":[1,2,3]}'
    model = ScriptedModel(
        [
            [function_call("forecast", arguments, call_id="call_1", item_id="fc_1")],
            [assistant_message("Sunny in Zürich.", item_id="msg_1")],
        ]
    )
    agent = Agent(name="assistant", model=model, tools=[forecast])
    result = await Runner.run(agent, "Weather in Zürich?", session=session, run_config=RUN_CONFIG)
    assert result.final_output == "Sunny in Zürich."
    assert seen == [("Zürich", [1, 2, 3])]
    model.assert_complete()

    tool_output = json.dumps(
        {"city": "Zürich", "sky": "sunny ☀", "days": [1, 2, 3]}, ensure_ascii=False
    )
    call_item = {
        "arguments": arguments,
        "call_id": "call_1",
        "name": "forecast",
        "type": "function_call",
        "id": "fc_1",
    }
    output_item = {"call_id": "call_1", "output": tool_output, "type": "function_call_output"}
    # The second model call got the call and its output from this run.
    assert model.calls[-1].input == [user("Weather in Zürich?"), call_item, output_item]

    stored = server.stored_items("tools")
    assert [item.get("type") for item in stored] == [
        None,
        "function_call",
        "function_call_output",
        "message",
    ]
    assert stored == [
        user("Weather in Zürich?"),
        call_item,
        output_item,
        assistant("Sunny in Zürich.", "msg_1"),
    ]
    # arguments/output stay JSON *strings*, byte-exact, not re-parsed objects.
    assert isinstance(stored[1]["arguments"], str) and stored[1]["arguments"] == arguments
    assert isinstance(stored[2]["output"], str) and stored[2]["output"] == tool_output

    # The next run replays the whole tool exchange to the model.
    model.enqueue([assistant_message("Still sunny.", item_id="msg_2")])
    await Runner.run(agent, "And tomorrow?", session=session, run_config=RUN_CONFIG)
    assert model.calls[-1].input == stored + [user("And tomorrow?")]


async def test_streamed_run_uses_the_session(server, make_session) -> None:
    session = make_session("streamed")
    await session.add_items([user("Remember: 42"), assistant("Noted.", "msg_0")])
    model = ScriptedModel([[assistant_message("It was 42.", item_id="msg_1")]])
    agent = Agent(name="assistant", model=model)
    streamed = Runner.run_streamed(
        agent, "What was the number?", session=session, run_config=RUN_CONFIG
    )
    async for _ in streamed.stream_events():
        pass
    assert streamed.final_output == "It was 42."
    assert model.calls[-1].streamed is True
    assert model.calls[-1].input == [
        user("Remember: 42"),
        assistant("Noted.", "msg_0"),
        user("What was the number?"),
    ]
    assert server.stored_items("streamed") == [
        user("Remember: 42"),
        assistant("Noted.", "msg_0"),
        user("What was the number?"),
        assistant("It was 42.", "msg_1"),
    ]


async def test_runner_continues_a_conversation_of_chat_run(server, make_session) -> None:
    """Turns taken by ``POST /chat/run`` are memory the SDK's runner reads as its own."""
    first = server.request(
        "POST",
        "/chat/run",
        json={"input": "My name is Ada", "session_id": "shared", "stream": False},
    )
    assert first.status_code == 200, first.text
    answer = first.json()["items"][1]
    assert answer == assistant("My name is Ada", answer["id"])  # the echo responder's answer

    model = ScriptedModel([[assistant_message("Your name is Ada.", item_id="msg_sdk")]])
    agent = Agent(name="assistant", instructions="Be brief.", model=model)
    session = make_session("shared")
    result = await Runner.run(agent, "What is my name?", session=session, run_config=RUN_CONFIG)
    assert result.final_output == "Your name is Ada."
    assert model.calls[0].input == [
        user("My name is Ada"),
        assistant("My name is Ada", answer["id"]),
        user("What is my name?"),
    ]
    assert len(server.stored_items("shared")) == 4
