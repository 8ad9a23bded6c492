// Talking to the API with the signed-in user's token. The token lives in memory and in
// `sessionStorage` (gone with the tab), never in `localStorage` or a cookie.

const TOKEN_KEY = "chatstore.console.token";
let token = null;

/** An error answer of the API: `status`, and `code`/`message` from its error JSON. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function currentToken() {
  if (token === null) token = sessionStorage.getItem(TOKEN_KEY);
  return token;
}

export function setToken(value) {
  token = value;
  if (value === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, value);
}

/** The `sub` of the token, for showing who is signed in (the server checks the token). */
export function tokenUser(value = currentToken()) {
  try {
    const payload = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const sub = JSON.parse(new TextDecoder().decode(bytes)).sub;
    return typeof sub === "string" ? sub : "";
  } catch {
    return "";
  }
}

function headers(body) {
  const result = { Accept: "application/json" };
  const current = currentToken();
  if (current) result.Authorization = `Bearer ${current}`;
  if (body !== undefined) result["Content-Type"] = "application/json";
  return result;
}

async function failure(response) {
  let code = "error";
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = String(body.error.code);
      message = String(body.error.message);
    }
  } catch {
    // Not the API's error JSON: keep the status line.
  }
  return new ApiError(response.status, code, message);
}

/**
 * `JSON.parse`, except that an integer a double cannot hold exactly (past 2^53, such as a
 * 64-bit id in a tool call) becomes a `BigInt` of its source digits, so that the console
 * shows what was stored rather than a rounded number ([`stringifyJson`] writes it back).
 * Where the browser lacks the reviver's source text, plain `JSON.parse`.
 */
export function parseJson(text) {
  if (typeof JSON.rawJSON !== "function") return JSON.parse(text);
  return JSON.parse(text, (_key, value, context) =>
    typeof value === "number" &&
    !Number.isSafeInteger(value) &&
    typeof context?.source === "string" &&
    /^-?\d+$/.test(context.source)
      ? BigInt(context.source)
      : value,
  );
}

/** `JSON.stringify` that writes the `BigInt`s of [`parseJson`] as plain JSON numbers. */
export function stringifyJson(value, indent) {
  return JSON.stringify(
    value,
    (_key, item) => (typeof item === "bigint" ? JSON.rawJSON(item.toString()) : item),
    indent,
  );
}

/** Sends a request and answers its JSON (`null` for 204); throws `ApiError` on non-2xx. */
export async function request(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body),
      body: body === undefined ? undefined : stringifyJson(body),
      cache: "no-store",
    });
  } catch (cause) {
    throw new ApiError(0, "network", `The server cannot be reached (${cause.message})`);
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return parseJson(await response.text());
}

/** A query string from an object; arrays repeat their key, empty values are left out. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== "") search.append(key, String(one));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** `/a/b` with each segment percent-encoded. */
export function path(...segments) {
  return segments.map((segment) => `/${encodeURIComponent(segment)}`).join("");
}

/** `GET path` as a Blob (for the export download). */
export async function download(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.blob();
}

/**
 * `POST /chatkit` for a streaming request: calls `onEvent` with each Server-Sent Event's JSON
 * as it arrives. `fetch` and a stream reader rather than `EventSource`, which cannot send the
 * Authorization header (nor POST).
 */
export async function streamChatKit(body, onEvent) {
  const response = await fetch("/chatkit", {
    method: "POST",
    headers: { ...headers(body), Accept: "text/event-stream" },
    body: stringifyJson(body),
    cache: "no-store",
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data !== "") onEvent(parseJson(data));
    }
  }
}
