/** Errors thrown by the chatstore client. */

/**
 * A request to chatstore failed.
 *
 * `status` is the HTTP status (`undefined` when no response arrived), `code` the server's error
 * code (`invalid_request`, `unauthorized`, `not_found`, `conflict`, `payload_too_large`,
 * `unsupported_media_type`, `unavailable`, `internal`; `undefined` when the body was not
 * chatstore's error JSON) and `requestId` the server's `x-request-id` header, to find the request
 * in its log.
 */
export class ChatstoreError extends Error {
  override name = "ChatstoreError";
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly requestId: string | undefined;

  constructor(
    message: string,
    details: { status?: number; code?: string; requestId?: string; cause?: unknown } = {},
  ) {
    const prefix = [details.status, details.code].filter((part) => part !== undefined).join(" ");
    const suffix = details.requestId ? ` (request id ${details.requestId})` : "";
    super(`chatstore: ${prefix ? `${prefix}: ` : ""}${message}${suffix}`, {
      cause: details.cause,
    });
    this.status = details.status;
    this.code = details.code;
    this.requestId = details.requestId;
  }

  /** The error for a non-2xx answer, reading chatstore's `{"error": {code, message}}` if present. */
  static fromResponse(status: number, statusText: string, body: string, headers: Headers) {
    let code: string | undefined;
    let message: string | undefined;
    try {
      const parsed: unknown = JSON.parse(body);
      const error = isObject(parsed) ? parsed["error"] : undefined;
      if (isObject(error)) {
        if (typeof error["code"] === "string") code = error["code"];
        if (typeof error["message"] === "string") message = error["message"];
      }
    } catch {
      // Not JSON (a proxy's error page, say): the text itself is the message.
    }
    message ??= body.trim().slice(0, 500) || statusText || "request failed";
    return new ChatstoreError(message, {
      status,
      code,
      requestId: headers.get("x-request-id") ?? undefined,
    });
  }
}

/**
 * No usable response arrived (connection refused or reset, timed out), after any retries. The
 * underlying error is the `cause`.
 */
export class ChatstoreConnectionError extends ChatstoreError {
  override name = "ChatstoreConnectionError";
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
