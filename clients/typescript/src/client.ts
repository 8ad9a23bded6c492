/**
 * A typed client for the whole chatstore API: `openapi-fetch` over the types generated from the
 * server's OpenAPI document (`src/generated/openapi.ts`), with chatstore's auth, retries and path
 * encoding.
 */
import createClient, { type Client } from "openapi-fetch";

import type { paths } from "./generated/openapi.js";
import { type ClientOptions, Transport, pathSegment } from "./http.js";

export type { components, operations, paths } from "./generated/openapi.js";

/** The typed client: `client.GET("/chats/{chat_id}", { params: { path: { chat_id } } })`. */
export type ChatstoreClient = Client<paths, "application/json">;

// Methods that may be repeated without changing the outcome (RFC 9110, 9.2.2).
const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/**
 * A client for every route of the OpenAPI document. Each call answers
 * `{ data, error, response }`: `data` for a 2xx, `error` (chatstore's `{"error": {code,
 * message}}`) otherwise. Idempotent requests (GET, PUT, DELETE) are retried after a connection
 * failure or a 502/503/504 answer; POSTs are not. A request that got no response at all, after
 * any retries, throws {@link ChatstoreConnectionError}.
 */
export function createChatstoreClient(options: ClientOptions): ChatstoreClient {
  const transport = new Transport(options);
  return createClient<paths>({
    baseUrl: transport.baseUrl,
    fetch: (request: Request) =>
      transport.send(() => request.clone(), IDEMPOTENT_METHODS.has(request.method)),
    pathSerializer: (pathname, params) =>
      pathname.replace(/\{([^{}]+)\}/g, (match, name: string) => {
        const value = params[name];
        return value === undefined || value === null ? match : pathSegment(String(value));
      }),
  });
}
