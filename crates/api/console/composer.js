// Talking to the configured responder through `POST /chatkit`: `threads.create` for a new
// thread, `threads.add_user_message` for an open one. The answer is drawn as its events
// arrive: items are added, text deltas appended, finished items redrawn.

import { streamChatKit } from "./api.js";
import { say } from "./dom.js";
import { appendDelta, threadItem } from "./reader.js";

/**
 * The composer. `threadId()` is the open thread (null for a new one); `transcript` receives
 * the items; `created(thread)` is told about a new thread.
 */
export function createComposer({ threadId, transcript, created, status }) {
  const form = document.getElementById("composer");
  const input = document.getElementById("composer-input");
  const send = document.getElementById("send");

  function place(item) {
    const node = threadItem(item);
    const existing = typeof item.id === "string"
      ? [...transcript.children].find((child) => child.dataset.itemId === item.id)
      : null;
    if (existing) existing.replaceWith(node);
    else transcript.append(node);
    transcript.scrollTop = transcript.scrollHeight;
  }

  function handle(event) {
    switch (event.type) {
      case "thread.created":
        created(event.thread);
        break;
      case "thread.updated":
        created(event.thread, true);
        break;
      case "thread.item.added":
      case "thread.item.done":
      case "thread.item.replaced":
        place(event.item);
        break;
      case "thread.item.removed":
        [...transcript.children].find((child) => child.dataset.itemId === event.item_id)?.remove();
        break;
      case "thread.item.updated": {
        const node = [...transcript.children].find((child) => child.dataset.itemId === event.item_id);
        const update = event.update ?? {};
        if (node && update.type === "assistant_message.content_part.text_delta") {
          appendDelta(node, update.content_index ?? 0, update.delta);
          transcript.scrollTop = transcript.scrollHeight;
        }
        break;
      }
      case "error":
        say(status, String(event.message ?? "The responder failed."), "error");
        break;
      case "notice":
        say(status, String(event.message ?? ""));
        break;
      default:
        break;
    }
  }

  async function submit(event) {
    event.preventDefault();
    const text = input.value.trim();
    if (text === "") return;
    const input_ = { content: [{ type: "input_text", text }], attachments: [], inference_options: {} };
    const current = threadId();
    const body = current
      ? { type: "threads.add_user_message", params: { input: input_, thread_id: current }, metadata: {} }
      : { type: "threads.create", params: { input: input_ }, metadata: {} };
    send.disabled = true;
    input.value = "";
    transcript.querySelector(".empty")?.remove();
    say(status, "Sending…", "busy");
    try {
      await streamChatKit(body, handle);
      if (status.dataset.kind === "busy") say(status, "");
    } catch (error) {
      input.value = text;
      say(status, error.message, "error");
    } finally {
      send.disabled = false;
      input.focus();
    }
  }

  form.addEventListener("submit", submit);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });

  return {
    show(visible) {
      form.hidden = !visible;
    },
  };
}
