// A real run(agent, input, { session }) of @openai/agents with ChatstoreSession as its memory and
// a local fake model: memory carries across runs, across session objects and across processes.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { after, before, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Agent, run, setDefaultOpenAIClient, setTracingDisabled, tool } from "@openai/agents";
import OpenAI from "openai";
import { z } from "zod";

import { ChatstoreSession } from "chatstore";

import { functionCall, message, startFakeModel } from "./fake-model.mjs";
import { onBothBackends, uniqueId } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));

let model;
before(async () => {
  model = await startFakeModel([]);
  setTracingDisabled(true);
  setDefaultOpenAIClient(new OpenAI({ baseURL: model.baseURL, apiKey: "test-key" }));
});
after(() => model.close());

/** The text of every message the model was sent in call `index`, with its role. */
function transcript(index) {
  return model.calls[index].body.input.map((item) => {
    if (item.type === "function_call") return `call ${item.name}(${item.arguments})`;
    if (item.type === "function_call_output") return `output ${JSON.stringify(item.output)}`;
    const text = typeof item.content === "string" ? item.content : item.content.map((part) => part.text).join("");
    return `${item.role}: ${text}`;
  });
}

onBothBackends("agents run() with ChatstoreSession", (server) => {
  const session = (id) =>
    new ChatstoreSession(id, { baseUrl: server.url, token: server.token("alice") });
  const agent = new Agent({ name: "assistant", instructions: "Be brief.", model: "gpt-4.1-mini" });

  it("remembers across runs, session objects and processes", async () => {
    const id = uniqueId("memory");
    const start = model.calls.length;
    model.enqueue([message("Nice to meet you, Ada.", "msg_1")], [message("Your name is Ada.", "msg_2")]);

    const first = await run(agent, "My name is Ada", { session: session(id) });
    assert.equal(first.finalOutput, "Nice to meet you, Ada.");
    assert.deepEqual(transcript(start), ["user: My name is Ada"]);

    const second = await run(agent, "What is my name?", { session: session(id) });
    assert.equal(second.finalOutput, "Your name is Ada.");
    const history = [
      "user: My name is Ada",
      "assistant: Nice to meet you, Ada.",
      "user: What is my name?",
    ];
    assert.deepEqual(transcript(start + 1), history);

    const stored = await server.storedItems(id);
    assert.equal(stored.length, 4);
    assert.deepEqual(
      stored.map((item) => item.role),
      ["user", "assistant", "user", "assistant"],
    );
    assert.equal(stored[3].id, "msg_2");
    assert.deepEqual(await session(id).getItems(), stored);

    // Another Node process, with its own ChatstoreSession on the same id, continues it.
    model.enqueue([message("Still Ada.", "msg_3")]);
    const { stdout } = await promisify(execFile)(process.execPath, [join(here, "agent-turn.mjs")], {
      env: {
        ...process.env,
        MODEL_URL: model.baseURL,
        CHATSTORE_URL: server.url,
        CHATSTORE_TOKEN: server.token("alice"),
        SESSION_ID: id,
        INPUT: "And now?",
      },
    });
    assert.equal(JSON.parse(stdout), "Still Ada.");
    assert.deepEqual(transcript(start + 2), [...history, "assistant: Your name is Ada.", "user: And now?"]);

    // ...and this process sees the other's turn.
    model.enqueue([message("Yes.", "msg_4")]);
    await run(agent, "Did you answer?", { session: session(id) });
    assert.deepEqual(transcript(start + 3).slice(-3), [
      "user: And now?",
      "assistant: Still Ada.",
      "user: Did you answer?",
    ]);
    assert.equal((await server.storedItems(id)).length, 8);
  });

  it("stores a tool call and its output and replays them", async () => {
    const id = uniqueId("tools");
    const start = model.calls.length;
    const seen = [];
    const forecast = tool({
      name: "forecast",
      description: "Weather forecast for a city.",
      parameters: z.object({ city: z.string(), days: z.array(z.number()) }),
      execute: ({ city, days }) => {
        seen.push([city, days]);
        return JSON.stringify({ city, sky: "sunny ☀", days });
      },
    });
    const withTool = new Agent({ name: "assistant", model: "gpt-4.1-mini", tools: [forecast] });
    const args = '{"city":"Zürich","days":[1,2,3]}';
    model.enqueue(
      [functionCall("forecast", args, "call_1", "fc_1")],
      [message("Sunny in Zürich.", "msg_1")],
    );
    const result = await run(withTool, "Weather in Zürich?", { session: session(id) });
    assert.equal(result.finalOutput, "Sunny in Zürich.");
    assert.deepEqual(seen, [["Zürich", [1, 2, 3]]]);

    const stored = await server.storedItems(id);
    assert.deepEqual(
      stored.map((item) => item.type ?? item.role),
      ["message", "function_call", "function_call_result", "message"],
    );
    // The arguments stay the model's exact JSON text.
    assert.equal(stored[1].arguments, args);

    model.enqueue([message("Still sunny.", "msg_2")]);
    await run(withTool, "And tomorrow?", { session: session(id) });
    assert.deepEqual(transcript(start + 2), [
      "user: Weather in Zürich?",
      `call forecast(${args})`,
      `output ${JSON.stringify(JSON.stringify({ city: "Zürich", sky: "sunny ☀", days: [1, 2, 3] }))}`,
      "assistant: Sunny in Zürich.",
      "user: And tomorrow?",
    ]);
  });
});
