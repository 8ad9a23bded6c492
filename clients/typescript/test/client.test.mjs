// The typed client (openapi-fetch over the generated types) against real servers: chats,
// ChatKit threads, items and attachments, and the error shape, through the packed package.
import assert from "node:assert/strict";
import { it } from "node:test";

import { ChatstoreSession, createChatstoreClient } from "chatstore";

import { onBothBackends, uniqueId } from "./support.mjs";

onBothBackends("typed client", (server) => {
  const client = () => createChatstoreClient({ baseUrl: server.url, token: server.token("alice") });

  it("creates, lists, counts, updates and deletes chats", async () => {
    const api = client();
    const chatId = uniqueId("chat");
    const conversation = [{ role: "user", content: "hello" }];
    const created = await api.POST("/chats", {
      body: { chat_id: chatId, title: "First", conversation },
    });
    assert.equal(created.response.status, 201, JSON.stringify(created.error));
    assert.equal(created.data.chat_id, chatId);
    assert.equal(created.data.item_count, 1);

    const again = await api.POST("/chats", { body: { chat_id: chatId } });
    assert.equal(again.response.status, 409);
    assert.equal(again.error.error.code, "conflict");

    const one = await api.GET("/chats/{chat_id}", { params: { path: { chat_id: chatId } } });
    assert.equal(one.data.title, "First");
    assert.deepEqual(one.data.conversation, conversation);
    // The chat's conversation is the session with the same id.
    assert.deepEqual(await server.storedItems(chatId), conversation);

    const updated = await api.PUT("/chats/{chat_id}", {
      params: { path: { chat_id: chatId } },
      body: { title: "Renamed", conversation: [{ role: "user", content: "replaced" }] },
    });
    assert.equal(updated.data.title, "Renamed");
    const session = new ChatstoreSession(chatId, { baseUrl: server.url, token: server.token("alice") });
    assert.deepEqual(await session.getItems(), [{ role: "user", content: "replaced" }]);

    const page = await api.GET("/chats", { params: { query: { limit: 100 } } });
    assert.ok(page.data.data.some((chat) => chat.chat_id === chatId && chat.title === "Renamed"));
    const before = await api.GET("/chats/count");

    const soft = await api.DELETE("/chats/{chat_id}", { params: { path: { chat_id: chatId } } });
    assert.equal(soft.response.status, 204);
    const after = await api.GET("/chats/count");
    assert.equal(after.data.count, before.data.count - 1);
    const hard = await api.DELETE("/chats/{chat_id}", {
      params: { path: { chat_id: chatId }, query: { hard: true } },
    });
    assert.equal(hard.response.status, 204);
    assert.equal((await server.request("GET", `/chats/${chatId}`)).status, 404);
  });

  it("stores ChatKit threads, items and attachments as sent", async () => {
    const api = client();
    const threadId = uniqueId("thr");
    const thread = {
      title: null,
      id: threadId,
      created_at: "2025-10-06T12:00:00.123456",
      status: { type: "active" },
      allowed_image_domains: null,
      metadata: { k: "v" },
    };
    const saved = await api.PUT("/threads/{thread_id}", {
      params: { path: { thread_id: threadId } },
      body: thread,
    });
    assert.equal(saved.response.status, 200, JSON.stringify(saved.error));
    assert.deepEqual(saved.data, thread);
    const loaded = await api.GET("/threads/{thread_id}", {
      params: { path: { thread_id: threadId } },
    });
    assert.deepEqual(loaded.data, thread);

    const item = (n) => ({
      id: `msg_${n}`,
      thread_id: threadId,
      created_at: `2025-10-06T12:00:0${n}`,
      type: "assistant_message",
      content: [{ annotations: [], text: `answer ${n}`, type: "output_text" }],
    });
    for (const n of [2, 1]) {
      const added = await api.POST("/threads/{thread_id}/items", {
        params: { path: { thread_id: threadId } },
        body: item(n),
      });
      assert.ok(added.response.ok, JSON.stringify(added.error));
    }
    const items = await api.GET("/threads/{thread_id}/items", {
      params: { path: { thread_id: threadId }, query: { order: "asc", limit: 10 } },
    });
    assert.deepEqual(items.data.data, [item(1), item(2)]);
    assert.equal(items.data.has_more, false);

    const attachmentId = uniqueId("atc");
    const attachment = {
      id: attachmentId,
      name: "notes.txt",
      mime_type: "text/plain",
      type: "file",
      upload_descriptor: null,
      thread_id: threadId,
      metadata: null,
    };
    const put = await api.PUT("/attachments/{attachment_id}", {
      params: { path: { attachment_id: attachmentId } },
      body: attachment,
    });
    assert.ok(put.response.ok, JSON.stringify(put.error));
    const got = await api.GET("/attachments/{attachment_id}", {
      params: { path: { attachment_id: attachmentId } },
    });
    assert.deepEqual(got.data, attachment);

    const gone = await api.DELETE("/threads/{thread_id}", {
      params: { path: { thread_id: threadId } },
    });
    assert.equal(gone.response.status, 204);
    const missing = await api.GET("/threads/{thread_id}/items/{item_id}", {
      params: { path: { thread_id: threadId, item_id: "msg_1" } },
    });
    assert.equal(missing.response.status, 404);
    assert.equal(missing.error.error.code, "not_found");
  });

  it("encodes path parameters as one segment and refuses dot segments", async () => {
    const api = client();
    const chatId = "a/b ?#%";
    const created = await api.POST("/chats", { body: { chat_id: chatId } });
    assert.equal(created.response.status, 201, JSON.stringify(created.error));
    const one = await api.GET("/chats/{chat_id}", { params: { path: { chat_id: chatId } } });
    assert.equal(one.data.chat_id, chatId);
    await assert.rejects(
      api.GET("/chats/{chat_id}", { params: { path: { chat_id: ".." } } }),
      /cannot be an id/,
    );
  });

  it("answers bad input with the error JSON", async () => {
    const api = client();
    const page = await api.GET("/chats", { params: { query: { limit: 0 } } });
    assert.equal(page.response.status, 400);
    assert.equal(page.error.error.code, "invalid_request");
    const anonymous = createChatstoreClient({ baseUrl: server.url, token: "expired.or.bad" });
    const denied = await anonymous.GET("/chats");
    assert.equal(denied.response.status, 401);
    assert.equal(denied.error.error.code, "unauthorized");
    const health = await anonymous.GET("/healthz");
    assert.equal(health.response.status, 200);
  });
});
