// The sidebar: the caller's chats (sessions) and ChatKit threads, newest first, a page at a
// time, with a tag filter, soft delete and restore, thread deletion, and search results.

import { ApiError, path, query, request } from "./api.js";
import { clear, el, say, timeElement } from "./dom.js";

const PAGE = 20;

/**
 * The sidebar. `open(kind, id, summary)` shows a conversation ("chat" or "thread");
 * `closed(kind, id)` tells that one was deleted.
 */
export function createLists({ open, closed, status }) {
  const list = document.getElementById("list");
  const more = document.getElementById("more");
  const tabs = {
    chats: document.getElementById("tab-chats"),
    threads: document.getElementById("tab-threads"),
    results: document.getElementById("tab-results"),
  };
  const chatFilters = document.getElementById("chat-filters");
  const threadFilters = document.getElementById("thread-filters");
  const tagInput = document.getElementById("tag-input");
  const showDeleted = document.getElementById("show-deleted");
  const searchInput = document.getElementById("search-input");

  let mode = "chats";
  let after = null;
  let loading = false;
  let generation = 0;
  let lastQuery = "";

  function tags() {
    return tagInput.value.split(",").map((t) => t.trim()).filter((t) => t !== "");
  }

  function select(next) {
    mode = next;
    for (const [name, tab] of Object.entries(tabs)) {
      tab.setAttribute("aria-selected", String(name === mode));
    }
    chatFilters.hidden = mode !== "chats";
    threadFilters.hidden = mode !== "threads";
    reload();
  }

  function reload() {
    generation += 1;
    after = null;
    clear(list);
    more.hidden = true;
    loadMore();
  }

  /** Asks for the next page of whatever the sidebar shows. */
  async function loadMore() {
    if (loading) return;
    loading = true;
    const mine = generation;
    try {
      let page;
      if (mode === "chats") {
        page = await request("GET", `/chats${query({ limit: PAGE, after, include_inactive: showDeleted.checked || undefined, tag: tags() })}`);
      } else if (mode === "threads") {
        page = await request("GET", `/threads${query({ limit: PAGE, after, order: "desc" })}`);
      } else {
        page = await request("GET", `/search${query({ q: lastQuery, kind: "all", limit: PAGE, after })}`);
      }
      if (mine !== generation) return;
      const rows = Array.isArray(page.data) ? page.data : [];
      for (const row of rows) list.append(entry(row));
      if (rows.length === 0 && after === null) {
        list.append(el("li", { class: "empty" }, mode === "results" ? "No matches." : "Nothing here yet."));
      }
      after = page.has_more ? page.after : null;
      more.hidden = !page.has_more;
    } catch (error) {
      if (mine !== generation) return;
      if (mode === "results" && error instanceof ApiError && error.status === 404) {
        clear(list);
        list.append(el("li", { class: "empty", id: "search-unavailable" }, "Search is not available on this server."));
      } else {
        say(status, error.message, "error");
      }
    } finally {
      loading = false;
    }
  }

  function entry(row) {
    if (mode === "chats") return chatEntry(row);
    if (mode === "threads") return threadEntry(row);
    return resultEntry(row);
  }

  function openButton(label, sub, onclick) {
    return el("button", { type: "button", class: "open", onclick }, el("span", { class: "title" }, label), sub);
  }

  function chatEntry(chat) {
    const title = chat.title || "(untitled)";
    const li = el("li", { class: chat.is_active ? "row" : "row inactive", dataset: { id: chat.chat_id, kind: "chat" } });
    const meta = el(
      "span",
      { class: "sub" },
      timeElement(chat.updated_at),
      ` · ${chat.item_count} items`,
      chat.is_active ? "" : " · deleted",
    );
    const tagList = Array.isArray(chat.tags) && chat.tags.length
      ? el("span", { class: "tags" }, chat.tags.map((t) => el("span", { class: "tag" }, String(t))))
      : null;
    const action = chat.is_active
      ? el("button", { type: "button", class: "small danger", onclick: () => setActive(chat, false, li) }, "Delete")
      : el("button", { type: "button", class: "small", onclick: () => setActive(chat, true, li) }, "Restore");
    li.append(openButton(title, [meta, tagList], () => open("chat", chat.chat_id, chat)), action);
    return li;
  }

  async function setActive(chat, active, li) {
    try {
      if (active) {
        await request("PUT", path("chats", chat.chat_id), { is_active: true });
      } else {
        await request("DELETE", path("chats", chat.chat_id));
      }
      say(status, active ? `Restored “${chat.title || chat.chat_id}”.` : `Deleted “${chat.title || chat.chat_id}”; it can be restored under Show deleted.`);
      if (!active) closed("chat", chat.chat_id);
      const updated = { ...chat, is_active: active };
      if (!active && !showDeleted.checked) li.remove();
      else li.replaceWith(chatEntry(updated));
    } catch (error) {
      say(status, error.message, "error");
    }
  }

  function threadEntry(thread) {
    const li = el("li", { class: "row", dataset: { id: thread.id, kind: "thread" } });
    const sub = el("span", { class: "sub" }, timeElement(thread.created_at));
    const remove = el("button", { type: "button", class: "small danger", onclick: () => confirmDelete(thread, li, remove) }, "Delete");
    li.append(openButton(thread.title || "(untitled thread)", sub, () => open("thread", thread.id, thread)), remove);
    return li;
  }

  /** Deleting a thread is permanent: the button asks once more, in place. */
  function confirmDelete(thread, li, button) {
    const question = el("span", { class: "confirm", role: "group", "aria-label": "Confirm deletion" });
    const yes = el("button", {
      type: "button",
      class: "small danger",
      onclick: async () => {
        try {
          await request("DELETE", path("threads", thread.id));
          li.remove();
          closed("thread", thread.id);
          say(status, `Deleted thread “${thread.title || thread.id}”.`);
        } catch (error) {
          say(status, error.message, "error");
        }
      },
    }, "Delete for good");
    const no = el("button", { type: "button", class: "small", onclick: () => question.replaceWith(button) }, "Cancel");
    question.append("Delete permanently? ", yes, no);
    button.replaceWith(question);
    no.focus();
  }

  function resultEntry(hit) {
    const kind = hit.kind === "thread" ? "thread" : "chat";
    const li = el("li", { class: "row", dataset: { id: hit.conversation_id, kind } });
    const sub = el("span", { class: "sub" }, el("span", { class: "snippet" }, String(hit.snippet ?? "")), " · ", kind, " ", timeElement(hit.created_at));
    const summary = kind === "chat" ? { chat_id: hit.conversation_id, title: hit.title } : { id: hit.conversation_id, title: hit.title };
    li.append(openButton(hit.title || hit.conversation_id, sub, () => open(kind, hit.conversation_id, summary)));
    return li;
  }

  function search(text) {
    lastQuery = text.trim();
    if (lastQuery === "") return;
    tabs.results.hidden = false;
    select("results");
  }

  // Arrow keys move between the tabs, as in any tab list.
  document.querySelector(".tabs").addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const visible = Object.values(tabs).filter((tab) => !tab.hidden);
    const index = visible.indexOf(document.activeElement);
    if (index < 0) return;
    const step = event.key === "ArrowRight" ? 1 : -1;
    const next = visible[(index + step + visible.length) % visible.length];
    next.focus();
    next.click();
    event.preventDefault();
  });
  tabs.chats.addEventListener("click", () => select("chats"));
  tabs.threads.addEventListener("click", () => select("threads"));
  tabs.results.addEventListener("click", () => select("results"));
  more.addEventListener("click", loadMore);
  showDeleted.addEventListener("change", reload);
  let tagTimer;
  let appliedTags = "";
  // Typing reloads after a pause; leaving the field (or clearing it) reloads at once.
  const applyTags = (delay) => {
    clearTimeout(tagTimer);
    tagTimer = setTimeout(() => {
      const current = tags().join(",");
      if (current === appliedTags) return;
      appliedTags = current;
      reload();
    }, delay);
  };
  tagInput.addEventListener("input", () => applyTags(300));
  tagInput.addEventListener("change", () => applyTags(0));
  document.getElementById("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search(searchInput.value);
  });
  // The list pages in as it is scrolled to its end.
  list.parentElement.addEventListener("scroll", () => {
    const box = list.parentElement;
    if (!more.hidden && box.scrollTop + box.clientHeight >= box.scrollHeight - 40) loadMore();
  });

  return {
    show: select,
    reload,
    mode: () => mode,
    /** Puts a new thread at the top of the thread list. */
    addThread(thread) {
      if (mode !== "threads") return;
      list.querySelector(".empty")?.remove();
      list.prepend(threadEntry(thread));
    },
  };
}
