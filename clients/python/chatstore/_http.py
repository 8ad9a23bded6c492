"""The HTTP plumbing shared by every chatstore client class: bearer tokens, retries with
backoff, error mapping, URL path segments and settling mutations under cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from .errors import ChatstoreConnectionError, ChatstoreError

#: Default per-request timeouts: 30 s overall, 10 s to connect.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
USER_AGENT = "chatstore-python/0.1.0"

RETRY_STATUSES = frozenset({502, 503, 504})
# Transport errors that a retry cannot fix.
_PERMANENT_TRANSPORT_ERRORS = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.ProxyError,
)
_MAX_RETRY_AFTER = 30.0
_MAX_BACKOFF = 8.0

_T = TypeVar("_T")

#: A bearer token, or a (sync or async) function of no arguments returning one.
TokenSource = str | Callable[[], str | Awaitable[str]]


def new_client(timeout: float | httpx.Timeout | None) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for a client object that owns its connection pool."""
    return httpx.AsyncClient(timeout=timeout, headers={"User-Agent": USER_AGENT})


async def call_token(source: Callable[..., Any], *args: Any) -> str:
    """Call a token function (sync or async) and check that it gave a non-empty string."""
    token = source(*args)
    if inspect.isawaitable(token):
        token = await token
    return check_token(token)


def check_token(token: object) -> str:
    if not isinstance(token, str) or not token:
        raise ValueError("token must be a non-empty string (or return one)")
    return token


async def resolve_token(source: TokenSource) -> str:
    """The token of a :data:`TokenSource` (a string, or a function called now)."""
    if callable(source):
        return await call_token(source)
    return check_token(source)


def path_segment(value: str) -> str:
    """Percent-encode an id as one URL path segment (``.`` and ``..`` too, which URL
    normalisation would otherwise drop)."""
    encoded = quote(value, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    token: Callable[[], Awaitable[str]],
    retry: bool,
    max_retries: int,
    retry_backoff: float,
    params: Mapping[str, Any] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Send one request, retrying connection failures and 502/503/504 answers when ``retry``.

    ``token`` is awaited before every attempt (so a refreshed token is picked up). A 2xx
    answer is returned; any other raises :class:`ChatstoreError`; no answer at all (after
    the retries) raises :class:`ChatstoreConnectionError`.
    """
    attempt = 0
    while True:
        request_headers = {"Accept": "application/json"}
        if headers:
            request_headers.update(headers)
        request_headers["Authorization"] = f"Bearer {await token()}"
        can_retry = retry and attempt < max_retries
        try:
            response = await client.request(
                method, url, params=params, content=content, headers=request_headers
            )
        except _PERMANENT_TRANSPORT_ERRORS as exc:
            raise ChatstoreConnectionError(f"{method} {url} failed: {exc!r}") from exc
        except httpx.TransportError as exc:
            if not can_retry:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise ChatstoreConnectionError(f"{method} {url} failed{tries}: {exc!r}") from exc
            delay = backoff(retry_backoff, attempt, None)
        else:
            if response.is_success:
                return response
            if not (can_retry and response.status_code in RETRY_STATUSES):
                raise ChatstoreError.from_response(response)
            delay = backoff(retry_backoff, attempt, response.headers.get("retry-after"))
        attempt += 1
        await asyncio.sleep(delay)


def backoff(base: float, attempt: int, retry_after: str | None) -> float:
    """Exponential backoff with jitter; a larger ``Retry-After`` (at most 30 s) wins."""
    delay = min(_MAX_BACKOFF, base * (2**attempt))
    delay *= 0.5 + random.random() / 2
    hinted = parse_retry_after(retry_after)
    if hinted is not None:
        delay = max(delay, min(hinted, _MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise unexpected(response, "the body is not JSON") from exc


def unexpected(response: httpx.Response, what: str) -> ChatstoreError:
    return ChatstoreError(
        f"unexpected response from {response.request.method} {response.request.url}: {what}",
        status_code=response.status_code,
        request_id=response.headers.get("x-request-id"),
    )


async def settle(awaitable: Awaitable[_T]) -> _T:
    """Await a mutation to its real outcome even if the caller is cancelled meanwhile, then
    re-raise the cancellation."""
    task = asyncio.ensure_future(awaitable)
    cancellation: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            if cancellation is None:
                cancellation = exc
    try:
        result = task.result()
    except BaseException:
        if cancellation is not None:
            raise cancellation from None
        raise
    if cancellation is not None:
        raise cancellation from None
    return result


class OwnedClient:
    """The HTTP client of a chatstore client object: made here (and then closed by ``aclose``)
    or passed in (and then left open for its owner)."""

    _client: httpx.AsyncClient
    _owns_client: bool

    def _use_client(self, client: httpx.AsyncClient | None, timeout: Any) -> None:
        if client is None:
            self._client = new_client(timeout)
            self._owns_client = True
        else:
            self._client = client
            self._owns_client = False

    async def aclose(self) -> None:
        """Close the HTTP client this object created (a client passed in stays open)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
