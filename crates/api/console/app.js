// The console: sign-in, and the view of one conversation, read page by page as it is
// scrolled up (`before=` for sessions, `after` for threads, newest page first).

import { ApiError, currentToken, download, path, query, request, setToken, tokenUser } from "./api.js";
import { createComposer } from "./composer.js";
import { clear, el, say, timeElement } from "./dom.js";
import { createLists } from "./lists.js";
import { sessionItems, threadItem } from "./reader.js";

const PAGE = 30;
/** A `before` past any session's last item: the first page is the newest one. */
const END = Number.MAX_SAFE_INTEGER;

const $ = (id) => document.getElementById(id);
const status = $("status");
const transcript = $("transcript");
const title = $("conversation-title");
const meta = $("conversation-meta");

/** What is open: `{kind: "chat"|"thread"|"new", id, cursor, done}`. */
let view = { kind: null };
let loading = false;

const lists = createLists({
  open: (kind, id, summary) => openConversation(kind, id, summary),
  closed: (kind, id) => {
    if (view.kind === kind && view.id === id) showEmpty();
  },
  status,
});

const composer = createComposer({
  threadId: () => (view.kind === "thread" ? view.id : null),
  transcript,
  status,
  created: (thread, updated) => {
    if (!thread || typeof thread.id !== "string") return;
    if (!updated) {
      view = { kind: "thread", id: thread.id, cursor: null, done: true };
      lists.addThread(thread);
    }
    if (view.id === thread.id) title.textContent = thread.title || "(untitled thread)";
  },
});

function showEmpty() {
  view = { kind: null };
  title.textContent = "Pick a conversation";
  clear(meta);
  clear(transcript);
  composer.show(false);
}

function openConversation(kind, id, summary = {}) {
  view = { kind, id, cursor: kind === "chat" ? END : null, done: false };
  clear(transcript);
  clear(meta);
  if (kind === "chat") {
    title.textContent = summary.title || "(untitled)";
    meta.append(`session ${id}`);
    if (summary.updated_at) meta.append(" · updated ", timeElement(summary.updated_at));
  } else {
    title.textContent = summary.title || "(untitled thread)";
    meta.append(`thread ${id}`);
    if (summary.created_at) meta.append(" · created ", timeElement(summary.created_at));
  }
  // The composer talks through ChatKit, so it writes to threads only.
  composer.show(kind === "thread");
  loadOlder();
  transcript.focus({ preventScroll: true });
  // On a phone the list sits above the conversation: bring the conversation into view.
  if (window.matchMedia("(max-width: 760px)").matches) $("conversation-header").scrollIntoView();
}

/** Loads the page before the oldest one shown, keeping the view where it was. */
async function loadOlder() {
  if (loading || view.done || view.kind === null) return;
  loading = true;
  const opened = view;
  try {
    let nodes;
    if (opened.kind === "chat") {
      const page = await request("GET", `${path("sessions", opened.id, "items")}${query({ limit: PAGE, before: opened.cursor })}`);
      nodes = sessionItems(page.items);
      opened.cursor = page.first_position;
      opened.done = page.first_position === null || page.first_position <= 1;
    } else {
      const page = await request("GET", `${path("threads", opened.id, "items")}${query({ limit: PAGE, order: "desc", after: opened.cursor })}`);
      nodes = page.data.slice().reverse().map(threadItem);
      opened.cursor = page.after;
      opened.done = !page.has_more;
    }
    if (opened !== view) return;
    const first = transcript.firstChild === null;
    const height = transcript.scrollHeight;
    transcript.prepend(...nodes);
    if (opened.done) {
      transcript.prepend(el("p", { class: "start" }, first && nodes.length === 0 ? "No messages yet." : "Start of the conversation"));
    }
    // Stay on what was shown: the new page goes above it.
    transcript.scrollTop = first ? transcript.scrollHeight : transcript.scrollTop + transcript.scrollHeight - height;
  } catch (error) {
    if (opened === view) say(status, error.message, "error");
  } finally {
    loading = false;
  }
  // A first page shorter than the screen leaves nothing to scroll: fetch on until it fills.
  if (opened === view && !opened.done && transcript.scrollHeight <= transcript.clientHeight) loadOlder();
}

transcript.addEventListener("scroll", () => {
  if (transcript.scrollTop < 80) loadOlder();
});

async function exportAll() {
  say(status, "Preparing the export…", "busy");
  try {
    const blob = await download("/export");
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: `chatstore-export-${tokenUser() || "me"}.ndjson` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    say(status, "Export downloaded.");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) say(status, "Export is not available on this server.", "error");
    else say(status, error.message, "error");
  }
}

/** Checks a token with the server, then shows the workspace. */
async function signIn(token) {
  setToken(token);
  try {
    await request("GET", "/chats/count");
  } catch (error) {
    setToken(null);
    showSignIn();
    say(status, error.status === 401 ? `That token was refused: ${error.message}` : error.message, "error");
    return;
  }
  say(status, "");
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("top-actions").hidden = false;
  const who = $("who");
  who.textContent = `Signed in as ${tokenUser()}`;
  who.hidden = false;
  showEmpty();
  lists.show("chats");
}

function showSignIn() {
  $("workspace").hidden = true;
  $("top-actions").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("token-input").value = "";
  // The development sign-in exists only where the server says so: an empty body is a 400
  // there, and a 404 everywhere else.
  request("POST", "/console/dev-token", {}).catch((error) => {
    $("dev-form").hidden = !(error instanceof ApiError && error.status === 400);
  });
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (token) signIn(token);
});

$("dev-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const user = $("dev-user").value.trim();
  if (!user) return;
  try {
    const answer = await request("POST", "/console/dev-token", { user });
    signIn(answer.token);
  } catch (error) {
    say(status, error.message, "error");
  }
});

$("sign-out").addEventListener("click", () => {
  setToken(null);
  showEmpty();
  showSignIn();
  say(status, "Signed out.");
});

$("export").addEventListener("click", exportAll);

$("new-thread").addEventListener("click", () => {
  view = { kind: "new", id: null, done: true };
  clear(transcript);
  clear(meta);
  title.textContent = "New thread";
  transcript.append(el("p", { class: "empty start" }, "Write the first message below."));
  composer.show(true);
  $("composer-input").focus();
});

// A `#token=...` link signs in at once; the token leaves the address bar and the history
// entry right away, so it is neither shown nor kept. (Also when only the fragment changes,
// which reloads nothing.)
function tokenFromFragment() {
  const linked = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (linked) window.history.replaceState(null, "", window.location.pathname + window.location.search);
  return linked;
}

window.addEventListener("hashchange", () => {
  const linked = tokenFromFragment();
  if (linked) signIn(linked);
});

const linked = tokenFromFragment();
if (linked) {
  signIn(linked);
} else if (currentToken()) {
  signIn(currentToken());
} else {
  showSignIn();
}
