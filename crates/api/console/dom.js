// Building the page. Every text that reaches the page goes through `textContent` (via `el`
// and `text`), never through HTML parsing: items are arbitrary user JSON on a page that holds
// a bearer token, so nothing in them may ever be read as markup.

/** A new element: `el("button", {class: "x", onclick: f}, "Label", child, ...)`. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, ...children);
  return node;
}

/** Appends children: nodes as they are, anything else as text. */
export function append(node, ...children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Removes every child of `node`. */
export function clear(node) {
  node.replaceChildren();
  return node;
}

/** `iso` as a short local date and time, or the text itself when it is not a date. */
export function formatTime(iso) {
  if (typeof iso !== "string" || iso === "") return "";
  // ChatKit timestamps may come without a zone; they are UTC.
  const hasZone = /(Z|[+-]\d\d:?\d\d)$/.test(iso);
  const date = new Date(hasZone ? iso : `${iso}Z`);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** A `<time>` element for an ISO timestamp, or nothing. */
export function timeElement(iso) {
  if (typeof iso !== "string" || iso === "") return null;
  return el("time", { datetime: iso, title: iso }, formatTime(iso));
}

/** A URL that may be shown as an image: only this server's own (signed attachment URLs). */
export function sameOriginUrl(url) {
  if (typeof url !== "string" || url === "") return null;
  try {
    const parsed = new URL(url, window.location.href);
    return parsed.origin === window.location.origin ? parsed.href : null;
  } catch {
    return null;
  }
}

/** A short status line in `node`: `kind` is "info", "error" or "busy". */
export function say(node, message, kind = "info") {
  node.textContent = message;
  node.dataset.kind = kind;
  node.hidden = message === "";
}
