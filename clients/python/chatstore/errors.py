"""Exceptions raised by the chatstore client."""

from __future__ import annotations

import httpx


class ChatstoreError(Exception):
    """A request to chatstore failed.

    ``status_code`` is the HTTP status (``None`` when no response arrived), ``code`` the
    server's error code (``invalid_request``, ``unauthorized``, ``not_found``, ``conflict``,
    ``payload_too_large``, ``unsupported_media_type``, ``unavailable``, ``internal``; ``None``
    when the body was not chatstore's error JSON), ``message`` the text for a person and
    ``request_id`` the server's ``x-request-id`` header, to find the request in its log.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = []
        if self.status_code is not None:
            parts.append(str(self.status_code))
        if self.code:
            parts.append(self.code)
        prefix = " ".join(parts)
        text = f"chatstore: {prefix}: {self.message}" if prefix else f"chatstore: {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    @classmethod
    def from_response(cls, response: httpx.Response) -> ChatstoreError:
        """Build the error for a non-2xx response, reading chatstore's error JSON if present."""
        code: str | None = None
        message: str | None = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            if isinstance(error.get("code"), str):
                code = error["code"]
            if isinstance(error.get("message"), str):
                message = error["message"]
        if message is None:
            text = response.text.strip()
            message = text[:500] if text else (response.reason_phrase or "request failed")
        return cls(
            message,
            status_code=response.status_code,
            code=code,
            request_id=response.headers.get("x-request-id"),
        )


class ChatstoreConnectionError(ChatstoreError):
    """No usable response arrived (connection refused, reset, timed out), after any retries.

    The underlying ``httpx`` exception is the ``__cause__``.
    """
