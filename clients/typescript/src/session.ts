/**
 * An OpenAI Agents SDK `Session` whose items live in a chatstore server.
 *
 * `ChatstoreSession` implements the `Session` interface of `@openai/agents` over chatstore's HTTP
 * API (`/sessions/{id}/items`, `/sessions/{id}/pop`), with the semantics of the Python client's
 * `ChatstoreSession`:
 *
 * - `getItems(limit?)`: the latest `limit` items, oldest first; every item without a limit.
 *   `limit <= 0` returns `[]` without a request (the rule of the SDK's `MemorySession`; the
 *   server itself answers 400 to a negative limit).
 * - `addItems(items)`: appends the batch atomically, in order; `[]` sends nothing. Each call
 *   sends one `Idempotency-Key` (a fresh UUID) and retries connection failures and 502/503/504
 *   answers with the same key and byte-identical body, so a retry never adds the batch twice.
 * - `popItem()`: removes and returns the newest item, `undefined` when empty. Never retried: a
 *   pop whose answer was lost may already have removed an item, and repeating it would remove
 *   another.
 * - `clearSession()`: removes every item. Retried like `addItems` (clearing is idempotent), and
 *   so is `getItems` (it changes nothing).
 *
 * Non-2xx answers throw {@link ChatstoreError}; failures with no response, after retries, throw
 * {@link ChatstoreConnectionError}.
 */
import { randomUUID } from "node:crypto";

import type { AgentInputItem, Session } from "@openai/agents";

import { ChatstoreError, isObject } from "./errors.js";
import { type ClientOptions, Transport, pathSegment } from "./http.js";

export type ChatstoreSessionOptions = ClientOptions;

/** Agent session memory stored in chatstore, one conversation per session id and user. */
export class ChatstoreSession implements Session {
  /** Any non-empty string up to 255 UTF-8 bytes; it is percent-encoded into the URL path. */
  readonly sessionId: string;
  private readonly transport: Transport;
  private readonly itemsUrl: string;
  private readonly popUrl: string;

  constructor(sessionId: string, options: ChatstoreSessionOptions) {
    if (typeof sessionId !== "string" || !sessionId) {
      throw new TypeError("sessionId must be a non-empty string");
    }
    this.sessionId = sessionId;
    this.transport = new Transport(options);
    const base = `${this.transport.baseUrl}/sessions/${pathSegment(sessionId)}`;
    this.itemsUrl = `${base}/items`;
    this.popUrl = `${base}/pop`;
  }

  async getSessionId(): Promise<string> {
    return this.sessionId;
  }

  /** The latest `limit` items, oldest first; every item when `limit` is undefined. */
  async getItems(limit?: number): Promise<AgentInputItem[]> {
    let url = this.itemsUrl;
    if (limit !== undefined && limit !== null) {
      if (!Number.isInteger(limit)) {
        throw new TypeError(`limit must be an integer, not ${String(limit)}`);
      }
      if (limit <= 0) return [];
      // Beyond 2**53 every session is shorter than the limit anyway.
      url += `?limit=${Math.min(limit, Number.MAX_SAFE_INTEGER)}`;
    }
    const body = await this.call("GET", url, true);
    const items = isObject(body) ? body["items"] : undefined;
    if (!Array.isArray(items)) throw unexpected("GET", url, 'expected {"items": [...]}');
    return items as AgentInputItem[];
  }

  /** Append `items` as one batch, in order; `[]` is a no-op (no request). */
  async addItems(items: AgentInputItem[]): Promise<void> {
    if (!Array.isArray(items)) throw new TypeError("items must be an array");
    if (items.length === 0) return;
    items.forEach((item, index) => {
      if (!isObject(item)) throw new TypeError(`items[${index}] must be a JSON object`);
    });
    // Encoded once, so that every retry sends the same bytes under the same key.
    const body = JSON.stringify({ items }, rejectNonFinite);
    const headers = { "Content-Type": "application/json", "Idempotency-Key": randomUUID() };
    await this.call("POST", this.itemsUrl, true, { body, headers });
  }

  /** Remove and return the newest item, or `undefined` when the session is empty. */
  async popItem(): Promise<AgentInputItem | undefined> {
    const body = await this.call("POST", this.popUrl, false);
    if (!isObject(body) || !("item" in body)) {
      throw unexpected("POST", this.popUrl, 'expected {"item": object | null}');
    }
    const item = body["item"];
    if (item === null) return undefined;
    if (!isObject(item)) {
      throw unexpected("POST", this.popUrl, "expected the item to be an object or null");
    }
    return item as AgentInputItem;
  }

  /** Remove every item of this session (an unknown session is fine). */
  async clearSession(): Promise<void> {
    await this.call("DELETE", this.itemsUrl, true);
  }

  toString(): string {
    return `ChatstoreSession(${JSON.stringify(this.sessionId)}, ${this.transport.baseUrl})`;
  }

  /** One request, retried when `retry`; the parsed JSON body of a 2xx answer (or null). */
  private async call(
    method: string,
    url: string,
    retry: boolean,
    init: { body?: string; headers?: Record<string, string> } = {},
  ): Promise<unknown> {
    const response = await this.transport.send(() => new Request(url, { method, ...init }), retry);
    const text = await response.text();
    if (!response.ok) {
      throw ChatstoreError.fromResponse(response.status, response.statusText, text, response.headers);
    }
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      throw unexpected(method, url, "the body is not JSON", response.status);
    }
  }
}

/** JSON has no NaN or Infinity: refuse them rather than let JSON.stringify store `null`. */
function rejectNonFinite(key: string, value: unknown): unknown {
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new TypeError(`items contain ${value} at "${key}", which JSON cannot hold`);
  }
  return value;
}

function unexpected(method: string, url: string, what: string, status?: number) {
  return new ChatstoreError(`unexpected response from ${method} ${url}: ${what}`, { status });
}
