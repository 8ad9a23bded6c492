/**
 * The HTTP plumbing shared by the session and the typed client: bearer tokens, retries with
 * backoff, timeouts and URL path segments.
 */
import { setTimeout as sleep } from "node:timers/promises";

import { ChatstoreConnectionError } from "./errors.js";

/** A bearer JWT, or a function (sync or async) returning one, called before every request. */
export type TokenSource = string | (() => string | Promise<string>);

/** What every chatstore client object is built from. */
export interface ClientOptions {
  /** The server's root URL, e.g. `http://127.0.0.1:8080` (a path prefix is kept). */
  baseUrl: string;
  /** A bearer JWT whose `sub` is the user, or a function returning one (for refreshed tokens). */
  token: TokenSource;
  /**
   * The `fetch` to send requests with, e.g. one shared by many sessions with its own connection
   * pool or proxy settings. Defaults to the global `fetch`.
   */
  fetch?: (request: Request) => Promise<Response>;
  /**
   * How many times a retryable request is repeated after a connection failure or a 502/503/504
   * answer (`0` disables retries). Default 3.
   */
  maxRetries?: number;
  /**
   * The first retry's delay in milliseconds; it doubles each retry (with jitter, at most 8 s). A
   * larger `Retry-After` (at most 30 s) wins. Default 250.
   */
  retryBackoffMs?: number;
  /** How long to wait for a response's headers, per attempt, in milliseconds. Default 30 000. */
  timeoutMs?: number;
}

export const USER_AGENT = "chatstore-typescript/0.1.0";
const RETRY_STATUSES = new Set([502, 503, 504]);
const MAX_BACKOFF_MS = 8_000;
const MAX_RETRY_AFTER_MS = 30_000;

/** {@link ClientOptions} checked once, with the defaults filled in. */
export class Transport {
  readonly baseUrl: string;
  private readonly token: TokenSource;
  private readonly fetch: (request: Request) => Promise<Response>;
  private readonly maxRetries: number;
  private readonly retryBackoffMs: number;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions) {
    if (!options || typeof options.baseUrl !== "string" || !options.baseUrl) {
      throw new TypeError("baseUrl is required");
    }
    // Throws now, not at the first request, when the URL is malformed.
    new URL(options.baseUrl);
    if (typeof options.token !== "string" && typeof options.token !== "function") {
      throw new TypeError("token must be a string or a function returning one");
    }
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.fetch = options.fetch ?? ((request) => globalThis.fetch(request));
    this.maxRetries = nonNegativeInteger("maxRetries", options.maxRetries ?? 3);
    this.retryBackoffMs = nonNegativeInteger("retryBackoffMs", options.retryBackoffMs ?? 250);
    this.timeoutMs = nonNegativeInteger("timeoutMs", options.timeoutMs ?? 30_000);
  }

  /**
   * Send the request `build()` makes, once or, when `retry`, again (a fresh copy from `build()`,
   * so the same method, URL, headers and body bytes) after a connection failure or a 502/503/504
   * answer. The token is resolved before every attempt. Returns the last response, whatever its
   * status; throws {@link ChatstoreConnectionError} when no response arrived.
   */
  async send(build: () => Request, retry: boolean): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const request = build();
      request.headers.set("Authorization", `Bearer ${await this.resolveToken()}`);
      if (!request.headers.has("Accept")) request.headers.set("Accept", "application/json");
      request.headers.set("User-Agent", USER_AGENT);
      const canRetry = retry && attempt < this.maxRetries;
      let response: Response;
      try {
        response = await this.attempt(request);
      } catch (error) {
        // The caller's own abort is an answer, not a failure to retry.
        if (request.signal.aborted) throw request.signal.reason;
        if (!canRetry) {
          const tries = attempt > 0 ? ` after ${attempt + 1} attempts` : "";
          throw new ChatstoreConnectionError(
            `${request.method} ${request.url} failed${tries}: ${describe(error)}`,
            { cause: error },
          );
        }
        await sleep(backoff(this.retryBackoffMs, attempt, null), undefined, {
          signal: request.signal,
        });
        continue;
      }
      if (!(canRetry && RETRY_STATUSES.has(response.status))) return response;
      const delay = backoff(this.retryBackoffMs, attempt, response.headers.get("retry-after"));
      await response.body?.cancel();
      await sleep(delay, undefined, { signal: request.signal });
    }
  }

  /** One fetch, aborted if no response headers arrive within the timeout. */
  private async attempt(request: Request): Promise<Response> {
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new Error(`no response within ${this.timeoutMs} ms`)),
      this.timeoutMs,
    );
    try {
      const signal = AbortSignal.any([request.signal, timeout.signal]);
      return await this.fetch(new Request(request, { signal }));
    } finally {
      clearTimeout(timer);
    }
  }

  private async resolveToken(): Promise<string> {
    const token = typeof this.token === "function" ? await this.token() : this.token;
    if (typeof token !== "string" || !token) {
      throw new TypeError("token must be a non-empty string (or a function returning one)");
    }
    return token;
  }
}

/**
 * Percent-encode an id as one URL path segment. `.` and `..` cannot be one: the URL standard
 * that `fetch` follows reads `%2E` as a dot too and drops such segments, which would send the
 * request to another route.
 */
export function pathSegment(value: string): string {
  if (value === "." || value === "..") {
    throw new TypeError(`"${value}" cannot be an id here: fetch would drop it from the URL path`);
  }
  return encodeURIComponent(value);
}

/** Exponential backoff with jitter; a larger `Retry-After` (at most 30 s) wins. */
export function backoff(baseMs: number, attempt: number, retryAfter: string | null): number {
  let delay = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** attempt) * (0.5 + Math.random() / 2);
  const hinted = parseRetryAfter(retryAfter);
  if (hinted !== undefined) delay = Math.max(delay, Math.min(hinted, MAX_RETRY_AFTER_MS));
  return delay;
}

/** `Retry-After` in milliseconds: delay-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const when = Date.parse(text);
  return Number.isNaN(when) ? undefined : Math.max(0, when - Date.now());
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer`);
  }
  return value;
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // Node's fetch says only "fetch failed"; the reason is its cause.
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
  return `${error.message}${cause}`;
}
