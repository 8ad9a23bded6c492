// Rendering conversation items as a chat: session items (Responses API input items) and
// ChatKit thread items. Items are arbitrary JSON, so every field is checked for its type
// before it is used, and whatever is not understood is still shown, as a collapsed block.

import { parseJson, stringifyJson } from "./api.js";
import { el, sameOriginUrl, timeElement } from "./dom.js";

const ROLES = new Set(["user", "assistant", "system", "developer"]);

/** A collapsed "Raw JSON" block for any item. */
function rawJson(item) {
  return el(
    "details",
    { class: "raw" },
    el("summary", {}, "Raw JSON"),
    el("pre", {}, stringifyJson(item, 2)),
  );
}

/** An image from this server, or the URL as text when it points elsewhere. */
function image(url, label) {
  const safe = sameOriginUrl(url);
  if (safe === null) {
    return el("p", { class: "attachment" }, `${label}: ${typeof url === "string" ? url : ""}`);
  }
  const caption = el("figcaption", {}, label);
  // A signed preview URL expires (attachments.preview_url_ttl_secs): say so, not a broken image.
  const img = el("img", {
    src: safe,
    alt: label,
    loading: "lazy",
    onerror: () => {
      img.remove();
      caption.textContent = `${label} (the image could not be loaded; its link may have expired)`;
    },
  });
  return el("figure", { class: "attachment" }, img, caption);
}

/** Text of a JSON value for a tool call's arguments or output: JSON strings are parsed. */
function pretty(value) {
  if (typeof value === "string") {
    try {
      return stringifyJson(parseJson(value), 2);
    } catch {
      return value;
    }
  }
  return stringifyJson(value, 2) ?? "null";
}

/** The parts of a message's `content` (a string, or a list of typed parts). */
function contentParts(content) {
  if (typeof content === "string") return [el("p", { class: "text" }, content)];
  if (!Array.isArray(content)) return [];
  return content.map((part) => {
    if (typeof part === "string") return el("p", { class: "text" }, part);
    if (part === null || typeof part !== "object") return null;
    switch (part.type) {
      case "input_text":
      case "output_text":
      case "text":
      case "summary_text":
      case "reasoning_text":
        return el("p", { class: "text" }, typeof part.text === "string" ? part.text : "");
      case "refusal":
        return el("p", { class: "text refusal" }, String(part.refusal ?? ""));
      case "input_image":
        return image(part.image_url, "image");
      case "input_file":
        return el("p", { class: "attachment" }, `file: ${String(part.filename ?? part.file_id ?? "")}`);
      case "input_tag":
        return el("span", { class: "tag" }, String(part.text ?? ""));
      default:
        return el("p", { class: "text unknown" }, `[${String(part.type)}]`);
    }
  });
}

/** A chat bubble: `role`, its parts, and its time. */
function bubble(role, parts, item, time) {
  const known = ROLES.has(role) ? role : "other";
  return el(
    "article",
    { class: `item message ${known}` },
    el("header", {}, el("span", { class: "role" }, role), timeElement(time)),
    el("div", { class: "body" }, parts),
    rawJson(item),
  );
}

/** A collapsed tool call, with its output when there is one. */
function toolCall(name, args, output, item, time, status) {
  const body = [el("h4", {}, "Arguments"), el("pre", {}, pretty(args))];
  if (output !== undefined && output !== null) {
    body.push(el("h4", {}, "Output"), el("pre", { class: "output" }, pretty(output)));
  }
  return el(
    "article",
    { class: "item tool" },
    el(
      "details",
      {},
      el("summary", {}, `Tool call: ${String(name ?? "?")}`, status ? ` (${status})` : "", " ", timeElement(time)),
      body,
    ),
    rawJson(item),
  );
}

function collapsed(title, parts, item, className = "item other") {
  return el(
    "article",
    { class: className },
    el("details", {}, el("summary", {}, title), parts),
    rawJson(item),
  );
}

/** One session item (Responses API input item). */
export function sessionItem(item) {
  if (item === null || typeof item !== "object") return collapsed("item", [], item);
  const time = item.created_at;
  switch (item.type) {
    case "function_call":
    case "custom_tool_call":
      return toolCall(item.name, item.arguments ?? item.input, item.output, item, time, item.status);
    case "function_call_output":
    case "custom_tool_call_output":
      return collapsed(`Tool output (${String(item.call_id ?? "")})`, [el("pre", {}, pretty(item.output))], item, "item tool");
    case "reasoning": {
      const parts = [...contentParts(item.summary), ...contentParts(item.content)];
      return collapsed("Reasoning", parts, item, "item reasoning");
    }
    case undefined:
    case "message":
      if (typeof item.role === "string") return bubble(item.role, contentParts(item.content), item, time);
      return collapsed("item", [], item);
    default:
      return collapsed(String(item.type), [el("pre", {}, pretty(item))], item);
  }
}

/**
 * Session items with each tool output folded into its call (by `call_id`), as a chat shows
 * them. Outputs whose call is not on the page stay on their own.
 */
export function sessionItems(items) {
  const outputs = new Map();
  for (const item of items) {
    if (item && item.type === "function_call_output" && typeof item.call_id === "string") {
      outputs.set(item.call_id, item);
    }
  }
  const calls = new Set(items.filter((i) => i && i.type === "function_call").map((i) => i.call_id));
  const nodes = [];
  for (const item of items) {
    if (item && item.type === "function_call_output" && calls.has(item.call_id)) continue;
    if (item && item.type === "function_call" && outputs.has(item.call_id)) {
      const output = outputs.get(item.call_id);
      nodes.push(toolCall(item.name, item.arguments, output.output, [item, output], item.created_at, item.status));
      continue;
    }
    nodes.push(sessionItem(item));
  }
  return nodes;
}

/** A ChatKit attachment: its image from the signed preview URL, else its name. */
function attachment(value) {
  if (value === null || typeof value !== "object") return null;
  const name = String(value.name ?? value.id ?? "attachment");
  if (value.type === "image" && value.preview_url) return image(value.preview_url, name);
  return el("p", { class: "attachment" }, `file: ${name}`);
}

/** One ChatKit thread item (stored form). */
export function threadItem(item) {
  if (item === null || typeof item !== "object") return collapsed("item", [], item);
  const time = item.created_at;
  let node;
  switch (item.type) {
    case "user_message": {
      const parts = contentParts(item.content);
      if (typeof item.quoted_text === "string" && item.quoted_text) {
        parts.unshift(el("blockquote", {}, item.quoted_text));
      }
      const files = Array.isArray(item.attachments) ? item.attachments.map(attachment) : [];
      node = bubble("user", [...parts, ...files], item, time);
      break;
    }
    case "assistant_message":
      node = bubble("assistant", contentParts(item.content), item, time);
      break;
    case "client_tool_call":
      node = toolCall(item.name, item.arguments, item.output, item, time, item.status);
      break;
    case "hidden_context_item":
    case "sdk_hidden_context":
      node = collapsed("Hidden context", [el("pre", {}, pretty(item.content))], item, "item reasoning");
      break;
    case "end_of_turn":
      node = el("hr", { class: "turn", title: "end of turn" });
      break;
    default:
      node = collapsed(String(item.type), [el("pre", {}, pretty(item))], item);
  }
  if (typeof item.id === "string") node.dataset.itemId = item.id;
  return node;
}

/** Appends a streamed text delta to an assistant item being written. */
export function appendDelta(node, contentIndex, delta) {
  const body = node.querySelector(".body");
  if (!body) return;
  let part = body.children[contentIndex];
  while (!part) {
    body.append(el("p", { class: "text" }));
    part = body.children[contentIndex];
  }
  part.textContent += String(delta ?? "");
}
