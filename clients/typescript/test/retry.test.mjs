// Retries never duplicate a write: one Idempotency-Key per addItems call, kept across retries,
// through a proxy that loses the first answer after the server has committed.
import assert from "node:assert/strict";
import { afterEach, beforeEach, it } from "node:test";

import { ChatstoreConnectionError, ChatstoreError, ChatstoreSession, createChatstoreClient } from "chatstore";

import { onBothBackends, startFaultyProxy, uniqueId } from "./support.mjs";

const BATCH = [
  { role: "user", content: "hello" },
  { type: "function_call", call_id: "c1", name: "f", arguments: "{}" },
  { type: "function_call_output", call_id: "c1", output: "ok" },
];

onBothBackends("idempotent retries", (server) => {
  let proxy;
  let fault;
  beforeEach(async () => {
    fault = () => undefined;
    proxy = await startFaultyProxy(server.url, (request, index) => fault(request, index));
  });
  afterEach(() => proxy.close());

  const session = (id, options = {}) =>
    new ChatstoreSession(id, {
      baseUrl: proxy.url,
      token: server.token("alice"),
      retryBackoffMs: 1,
      ...options,
    });

  for (const kind of ["drop", "502"]) {
    it(`adds a batch once when the first answer is lost (${kind})`, async () => {
      const id = uniqueId(`retry-${kind}`);
      fault = (request, index) => (index === 0 ? kind : undefined);
      await session(id).addItems(BATCH);

      assert.equal(proxy.requests.length, 2);
      const [first, second] = proxy.requests;
      assert.equal(first.method, "POST");
      assert.match(first.headers["idempotency-key"], /^[0-9a-f-]{36}$/);
      assert.equal(second.headers["idempotency-key"], first.headers["idempotency-key"]);
      assert.equal(second.body, first.body);
      assert.equal(second.url, first.url);
      // The server committed the first attempt; the retry added nothing more.
      assert.deepEqual(await server.storedItems(id), BATCH);
    });
  }

  it("retries with the same key after a timeout", async () => {
    const id = uniqueId("timeout");
    fault = (request, index) => (index === 0 ? "hang" : undefined);
    await session(id, { timeoutMs: 1000 }).addItems(BATCH);
    assert.equal(proxy.requests.length, 2);
    const [first, second] = proxy.requests;
    assert.equal(second.headers["idempotency-key"], first.headers["idempotency-key"]);
    assert.deepEqual(await server.storedItems(id), BATCH);
  });

  it("gives each addItems call its own key", async () => {
    const id = uniqueId("two-calls");
    const s = session(id);
    await s.addItems(BATCH);
    await s.addItems(BATCH);
    const keys = proxy.requests.map((request) => request.headers["idempotency-key"]);
    assert.equal(new Set(keys).size, 2);
    assert.deepEqual(await server.storedItems(id), [...BATCH, ...BATCH]);
  });

  it("retries a 503 and then succeeds", async () => {
    const id = uniqueId("retry-503");
    fault = (request, index) => (index < 2 ? "503" : undefined);
    await session(id).addItems(BATCH);
    assert.equal(proxy.requests.length, 3);
    assert.deepEqual(await server.storedItems(id), BATCH);
  });

  it("bounds the retries", async () => {
    const id = uniqueId("bounded");
    fault = () => "503";
    await assert.rejects(session(id, { maxRetries: 2 }).addItems(BATCH), (error) => {
      assert.ok(error instanceof ChatstoreError);
      assert.equal(error.status, 503);
      assert.equal(error.code, "unavailable");
      return true;
    });
    assert.equal(proxy.requests.length, 3);
    await assert.rejects(session(id, { maxRetries: 0 }).getItems(), ChatstoreError);
    assert.equal(proxy.requests.length, 4);
    assert.deepEqual(await server.storedItems(id), []);
  });

  it("retries reads and clears", async () => {
    const id = uniqueId("read-clear");
    fault = (request, index) => (index === 1 || index === 3 ? "drop" : undefined);
    const s = session(id);
    await s.addItems(BATCH); // request 0
    assert.deepEqual(await s.getItems(), BATCH); // requests 1 (lost) and 2
    await s.clearSession(); // requests 3 (lost) and 4
    assert.deepEqual(
      proxy.requests.map((request) => request.method),
      ["POST", "GET", "GET", "DELETE", "DELETE"],
    );
    assert.deepEqual(await server.storedItems(id), []);
  });

  it("never retries a pop", async () => {
    const id = uniqueId("pop");
    await session(id).addItems(BATCH);
    fault = () => "drop";
    await assert.rejects(session(id).popItem(), ChatstoreConnectionError);
    assert.equal(proxy.requests.length, 2);
    // Exactly one pop reached the server: one item gone, not several.
    assert.deepEqual(await server.storedItems(id), BATCH.slice(0, 2));

    fault = () => "502";
    await assert.rejects(session(id).popItem(), (error) => error.status === 502);
    assert.equal(proxy.requests.length, 3);
    assert.deepEqual(await server.storedItems(id), BATCH.slice(0, 1));
  });

  it("retries the typed client's idempotent requests only", async () => {
    const client = createChatstoreClient({
      baseUrl: proxy.url,
      token: server.token("alice"),
      retryBackoffMs: 1,
    });
    const threadId = uniqueId("thr");
    const thread = { id: threadId, title: "Retried", created_at: "2026-01-01T00:00:00", status: { type: "active" }, metadata: {} };
    fault = (request, index) => (index === 0 ? "drop" : undefined);
    const saved = await client.PUT("/threads/{thread_id}", {
      params: { path: { thread_id: threadId } },
      body: thread,
    });
    assert.equal(saved.response.status, 200, JSON.stringify(saved.error));
    assert.equal(proxy.requests.length, 2);
    assert.equal(proxy.requests[1].body, proxy.requests[0].body);

    const chatId = uniqueId("chat");
    fault = () => "drop";
    await assert.rejects(
      client.POST("/chats", { body: { chat_id: chatId } }),
      ChatstoreConnectionError,
    );
    assert.equal(proxy.requests.length, 3);
    const created = await server.request("GET", `/chats/${chatId}`);
    assert.equal(created.status, 200, "the POST reached the server once");
  });
});
