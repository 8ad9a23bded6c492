// Every id lives in its owner's namespace: another user's session looks empty, and nothing a
// user does touches another's data, through the session and the typed client alike.
import assert from "node:assert/strict";
import { it } from "node:test";

import { ChatstoreSession, createChatstoreClient } from "chatstore";

import { onBothBackends, uniqueId } from "./support.mjs";

onBothBackends("isolation between users", (server) => {
  const sessionOf = (name, id) =>
    new ChatstoreSession(id, { baseUrl: server.url, token: server.token(name) });

  it("keeps two users' sessions with the same id apart", async () => {
    const id = uniqueId("same-id");
    const alice = sessionOf("alice", id);
    const bob = sessionOf("bob", id);
    await alice.addItems([{ role: "user", content: "alice's secret" }]);

    assert.deepEqual(await bob.getItems(), []);
    assert.equal(await bob.popItem(), undefined);
    await bob.clearSession();
    await bob.addItems([{ role: "user", content: "bob's own" }]);

    assert.deepEqual(await alice.getItems(), [{ role: "user", content: "alice's secret" }]);
    assert.deepEqual(await bob.getItems(), [{ role: "user", content: "bob's own" }]);
    assert.deepEqual(await server.storedItems(id, "alice"), [
      { role: "user", content: "alice's secret" },
    ]);
    assert.deepEqual(await server.storedItems(id, "bob"), [{ role: "user", content: "bob's own" }]);
  });

  it("answers another user's chat as missing", async () => {
    const alice = createChatstoreClient({ baseUrl: server.url, token: server.token("alice") });
    const bob = createChatstoreClient({ baseUrl: server.url, token: () => server.token("bob") });
    const chatId = uniqueId("chat");
    const created = await alice.POST("/chats", { body: { chat_id: chatId, title: "Alice's" } });
    assert.equal(created.response.status, 201, JSON.stringify(created.error));

    const seen = await bob.GET("/chats/{chat_id}", { params: { path: { chat_id: chatId } } });
    assert.equal(seen.response.status, 404);
    assert.equal(seen.error.error.code, "not_found");
    const deleted = await bob.DELETE("/chats/{chat_id}", {
      params: { path: { chat_id: chatId }, query: { hard: true } },
    });
    assert.equal(deleted.response.status, 404);
    const bobs = await bob.GET("/chats");
    assert.ok(!bobs.data.data.some((chat) => chat.chat_id === chatId));

    const still = await server.request("GET", `/chats/${chatId}`);
    assert.equal(still.status, 200);
    assert.equal(still.body.title, "Alice's");
  });
});
