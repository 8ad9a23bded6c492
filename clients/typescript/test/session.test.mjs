// The Session protocol of ChatstoreSession against real servers, through the packed package.
import assert from "node:assert/strict";
import { it } from "node:test";

import { ChatstoreConnectionError, ChatstoreError, ChatstoreSession } from "chatstore";

import { onBothBackends, startFaultyProxy, uniqueId } from "./support.mjs";

const user = (text) => ({ role: "user", content: text });
const assistant = (text, id) => ({
  id,
  type: "message",
  role: "assistant",
  status: "completed",
  content: [{ type: "output_text", text, annotations: [] }],
});

onBothBackends("session protocol", (server) => {
  const session = (id, options = {}) =>
    new ChatstoreSession(id, { baseUrl: server.url, token: server.token("alice"), ...options });

  it("adds, reads the latest items, pops and clears", async () => {
    const id = uniqueId("protocol");
    const s = session(id);
    assert.equal(await s.getSessionId(), id);
    assert.deepEqual(await s.getItems(), []);
    assert.equal(await s.popItem(), undefined);

    await s.addItems([user("one"), assistant("two", "msg_2")]);
    await s.addItems([user("three")]);
    const all = [user("one"), assistant("two", "msg_2"), user("three")];
    assert.deepEqual(await s.getItems(), all);
    assert.deepEqual(await server.storedItems(id), all);
    assert.deepEqual(await s.getItems(2), all.slice(1));
    assert.deepEqual(await s.getItems(10), all);
    assert.deepEqual(await s.getItems(Number.MAX_SAFE_INTEGER * 4), all);
    assert.deepEqual(await s.getItems(0), []);
    assert.deepEqual(await s.getItems(-3), []);
    await assert.rejects(s.getItems(1.5), TypeError);

    assert.deepEqual(await s.popItem(), user("three"));
    assert.deepEqual(await s.popItem(), assistant("two", "msg_2"));
    assert.deepEqual(await server.storedItems(id), [user("one")]);

    await s.clearSession();
    assert.deepEqual(await s.getItems(), []);
    assert.deepEqual(await server.storedItems(id), []);
    assert.equal(await s.popItem(), undefined);
    // Clearing a session that never existed is fine too.
    await session(uniqueId("never")).clearSession();
  });

  it("stores items losslessly", async () => {
    const id = uniqueId("fidelity");
    const items = [
      { zeta: 1, alpha: { nested: [1, 2.5, -7, 1e21, "x"] }, role: "user", content: "key order" },
      { role: "user", content: "NUL \u0000, emoji 🎉, accents Zürich, RTL שלום" },
      { type: "function_call", call_id: "c1", name: "f", arguments: '{"city":"Zürich"}' },
      { type: "function_call_output", call_id: "c1", output: "null", extra: null, flag: false },
    ];
    await session(id).addItems(items);
    const stored = await server.storedItems(id);
    assert.deepEqual(stored, items);
    assert.deepEqual(Object.keys(stored[0]), Object.keys(items[0]));
    assert.deepEqual(await session(id).getItems(), items);
  });

  it("encodes any session id as one path segment", async () => {
    for (const id of ["a/b", "100%", "with space", "é🎉", "?x=1#y", "...", "%2E"]) {
      await session(id).addItems([user(`in ${id}`)]);
      assert.deepEqual(await server.storedItems(id), [user(`in ${id}`)], id);
      assert.deepEqual(await session(id).getItems(), [user(`in ${id}`)], id);
    }
  });

  it("sends nothing for an empty batch and rejects non-objects before sending", async () => {
    const proxy = await startFaultyProxy(server.url);
    try {
      const id = uniqueId("empty");
      const s = session(id, { baseUrl: proxy.url });
      await s.addItems([]);
      await assert.rejects(s.addItems([user("ok"), "not an object"]), TypeError);
      await assert.rejects(s.addItems([[1]]), TypeError);
      await assert.rejects(s.addItems([{ role: "user", content: "x", score: NaN }]), TypeError);
      await assert.rejects(s.addItems([{ role: "user", content: "x", big: 1n }]), TypeError);
      assert.equal(proxy.requests.length, 0);
      assert.deepEqual(await server.storedItems(id), []);
    } finally {
      await proxy.close();
    }
  });

  it("asks an async token function before every request", async () => {
    const id = uniqueId("token-fn");
    let calls = 0;
    const s = session(id, {
      token: async () => {
        calls += 1;
        return server.token("alice");
      },
    });
    await s.addItems([user("hi")]);
    await s.getItems();
    await s.popItem();
    assert.equal(calls, 3);
    assert.deepEqual(await server.storedItems(id), []);
  });

  it("sends through a shared fetch", async () => {
    const seen = [];
    const sharedFetch = (request) => {
      seen.push(`${request.method} ${new URL(request.url).pathname}`);
      return fetch(request);
    };
    const a = session(uniqueId("shared-a"), { fetch: sharedFetch });
    const b = session(uniqueId("shared-b"), { fetch: sharedFetch });
    await a.addItems([user("a")]);
    await b.addItems([user("b")]);
    assert.deepEqual(await b.getItems(), [user("b")]);
    assert.deepEqual(seen, [
      `POST /sessions/${a.sessionId}/items`,
      `POST /sessions/${b.sessionId}/items`,
      `GET /sessions/${b.sessionId}/items`,
    ]);
  });

  it("throws the server's error and changes nothing", async () => {
    const id = uniqueId("errors");
    const bad = session(id, { token: "not.a.jwt" });
    await assert.rejects(bad.addItems([user("x")]), (error) => {
      assert.ok(error instanceof ChatstoreError);
      assert.equal(error.status, 401);
      assert.equal(error.code, "unauthorized");
      assert.ok(error.requestId, "the server's x-request-id is kept");
      assert.ok(!error.message.includes("not.a.jwt"), "the token never reaches the message");
      return true;
    });

    const tooLong = session("x".repeat(256));
    await assert.rejects(tooLong.addItems([user("x")]), (error) => {
      assert.equal(error.status, 400);
      assert.equal(error.code, "invalid_request");
      return true;
    });
    assert.deepEqual(await server.storedItems(id), []);
  });

  it("reports a server that cannot be reached", async () => {
    const s = session("offline", { baseUrl: "http://127.0.0.1:9", maxRetries: 1, retryBackoffMs: 1 });
    await assert.rejects(s.getItems(), (error) => {
      assert.ok(error instanceof ChatstoreConnectionError);
      assert.equal(error.status, undefined);
      assert.match(error.message, /after 2 attempts/);
      return true;
    });
  });

  it("refuses the ids that fetch cannot put in a path", () => {
    for (const id of [".", ".."]) {
      assert.throws(() => session(id), /cannot be an id/);
    }
  });

  it("checks its arguments", () => {
    assert.throws(() => new ChatstoreSession("", { baseUrl: server.url, token: "t" }), TypeError);
    assert.throws(() => new ChatstoreSession("s", { baseUrl: "", token: "t" }), TypeError);
    assert.throws(() => new ChatstoreSession("s", { baseUrl: "not a url", token: "t" }), TypeError);
    assert.throws(() => new ChatstoreSession("s", { baseUrl: server.url }), TypeError);
    assert.throws(
      () => new ChatstoreSession("s", { baseUrl: server.url, token: "t", maxRetries: -1 }),
      RangeError,
    );
  });
});
