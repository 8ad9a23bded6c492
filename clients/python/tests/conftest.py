"""Fixtures: a real chatstore server on a fresh database per test, over SQLite and PostgreSQL.

The binary comes from ``CHATSTORE_BIN`` or ``<repo>/target/debug/chatstore``; nothing is built
here (run ``cargo build -p chatstore`` first). PostgreSQL is reached with ``psql`` at
``CHATSTORE_TEST_PG_URL`` (default ``postgres://postgres@127.0.0.1:5432``); when it is
unreachable the ``postgres`` cases are skipped with a loud reason, except under ``CI=true``,
where they fail.
"""

from __future__ import annotations

import contextlib
import os

# Before anything imports the SDK: no tracing exporter (there is no network here).
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from chatstore import ChatstoreSession

REPO_ROOT = Path(__file__).resolve().parents[3]
PG_URL = os.environ.get("CHATSTORE_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
START_TIMEOUT_SECS = 60.0
STOP_TIMEOUT_SECS = 30.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


# -- the binary -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chatstore_bin() -> Path:
    configured = os.environ.get("CHATSTORE_BIN")
    path = Path(configured) if configured else REPO_ROOT / "target" / "debug" / "chatstore"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"chatstore binary not found at {path} "
            f"({'from CHATSTORE_BIN' if configured else 'default location'}). "
            "Build it first: run `cargo build -p chatstore` in the repository root "
            "(or set CHATSTORE_BIN to the binary).",
            pytrace=False,
        )
    return path


# -- PostgreSQL -------------------------------------------------------------------------------


def _psql(sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
    psql = shutil.which("psql")
    if psql is None:
        raise FileNotFoundError("psql is not installed (apt-get install postgresql-client)")
    return subprocess.run(
        [psql, f"{PG_URL}/{database}", "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )


@pytest.fixture(scope="session")
def postgres_problem() -> str | None:
    """``None`` when PostgreSQL answers, else why not."""
    try:
        done = _psql("SELECT 1")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0 or done.stdout.strip() != "1":
        return (done.stderr or done.stdout).strip() or f"psql exited {done.returncode}"
    return None


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path, postgres_problem: str | None) -> Iterator[str]:
    """A fresh, empty database on ``backend`` (SQLite in ``directory``, or a new PostgreSQL
    database dropped afterwards); skips (or, under ``CI=true``, fails) when PostgreSQL is
    unreachable."""
    if backend == "sqlite":
        yield f"sqlite://{directory}/chatstore.db?mode=rwc"
        return
    if postgres_problem is not None:
        reason = f"PostgreSQL at {PG_URL} is unreachable: {postgres_problem}"
        if _in_ci():
            pytest.fail(f"{reason} (CI=true: the postgres backend must be tested)", pytrace=False)
        pytest.skip(f"!!! POSTGRES BACKEND NOT TESTED !!! {reason}")
    name = f"chatstore_py_{uuid.uuid4().hex[:16]}"
    created = _psql(f'CREATE DATABASE "{name}"')
    if created.returncode != 0:
        pytest.fail(f"CREATE DATABASE {name} failed: {created.stderr.strip()}", pytrace=False)
    try:
        yield f"{PG_URL}/{name}"
    finally:
        # Callers stop the server before leaving this context.
        dropped = _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if dropped.returncode != 0:
            raise RuntimeError(f"DROP DATABASE {name} failed: {dropped.stderr.strip()}")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_problem: str | None
) -> Iterator[str]:
    """A fresh, empty database for one test."""
    with fresh_database(request.param, tmp_path, postgres_problem) as url:
        yield url


# -- the server -------------------------------------------------------------------------------


def path_segment(session_id: str) -> str:
    """Percent-encode an id as one path segment ("." and ".." too, which URL parsers drop)."""
    encoded = quote(session_id, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


class Server:
    """A running ``chatstore serve`` and helpers to talk to it directly."""

    def __init__(self, binary: Path, env: dict[str, str], log_path: Path, backend: str) -> None:
        self.binary = binary
        self.env = env
        self.log_path = log_path
        self.backend = backend
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._tokens: dict[str, str] = {}

    # lifecycle

    def start(self, cwd: Path) -> None:
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                [str(self.binary), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                cwd=cwd,
            )
        finally:
            log.close()
        lines: queue.Queue[bytes | None] = queue.Queue()

        def pump(stream: Any) -> None:
            for line in iter(stream.readline, b""):
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, args=(self.process.stdout,), daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT_SECS)
        except queue.Empty:
            self.stop()
            pytest.fail(
                f"chatstore serve printed no listening line within {START_TIMEOUT_SECS}s\n"
                + self.log_tail(),
                pytrace=False,
            )
        match = re.search(rb"listening on (https?://\S+)", line or b"")
        if match is None:
            self.stop()
            pytest.fail(
                f"chatstore serve did not start (stdout line: {line!r}, "
                f"exit code {self.process.poll()})\n" + self.log_tail(),
                pytrace=False,
            )
        self.url = match.group(1).decode().rstrip("/")
        self.wait_ready()

    def wait_ready(self) -> None:
        """The server listens at once but serves only once its database is open."""
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(
                    "chatstore serve exited before it was ready\n" + self.log_tail(),
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"chatstore serve was not ready within {START_TIMEOUT_SECS}s\n" + self.log_tail(),
                    pytrace=False,
                )
            time.sleep(0.05)

    def stop(self) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired as exc:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"chatstore serve ignored SIGTERM for {STOP_TIMEOUT_SECS}s\n" + self.log_tail()
                ) from exc
        return process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "server log (tail):\n" + "\n".join(text.splitlines()[-lines:])

    # auth

    def token(self, user: str) -> str:
        if user not in self._tokens:
            done = subprocess.run(
                [str(self.binary), "token", user],
                capture_output=True,
                text=True,
                env=self.env,
                timeout=60,
            )
            if done.returncode != 0:
                raise RuntimeError(f"chatstore token {user} failed: {done.stderr.strip()}")
            token = done.stdout.strip()
            assert token.count(".") == 2, f"not a JWT: {token!r}"
            self._tokens[user] = token
        return self._tokens[user]

    # raw HTTP, to check what the server stored independently of the client under test

    def request(self, method: str, path: str, user: str = "alice", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}", **kwargs.pop("headers", {})}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            return client.request(method, path, headers=headers, **kwargs)

    def stored_items(self, session_id: str, user: str = "alice", limit: int | None = None) -> list:
        params = {} if limit is None else {"limit": limit}
        response = self.request(
            "GET", f"/sessions/{path_segment(session_id)}/items", user=user, params=params
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items"}, body
        return body["items"]


@contextlib.contextmanager
def running_server(
    binary: Path, database_url: str, directory: Path, backend: str
) -> Iterator[Server]:
    """``chatstore serve`` on ``database_url`` (its log in ``directory``), stopped with SIGTERM
    on leaving, which must exit it cleanly."""
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "PORT": "0",
    }
    srv = Server(binary, env, directory / "server.log", backend)
    srv.start(cwd=directory)
    try:
        yield srv
    finally:
        code = srv.stop()
        if code != 0:
            raise RuntimeError(
                f"chatstore serve exited with {code} after SIGTERM\n" + srv.log_tail()
            )


@pytest.fixture
def server(
    chatstore_bin: Path, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """A fresh ``chatstore serve`` on a fresh database, stopped with SIGTERM afterwards."""
    backend = request.node.callspec.params["database_url"]
    with running_server(chatstore_bin, database_url, tmp_path, backend) as srv:
        yield srv


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_server(
    chatstore_bin: Path,
    postgres_problem: str | None,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Server]:
    """Like ``server``, but one server (on one fresh database) for all tests of a module that
    use it, per backend: for read-mostly tests over one shared data set."""
    directory = tmp_path_factory.mktemp(f"module-{request.param}")
    with fresh_database(request.param, directory, postgres_problem) as url:
        with running_server(chatstore_bin, url, directory, request.param) as srv:
            yield srv


@pytest.fixture
async def make_session(server: Server) -> AsyncIterator[Callable[..., ChatstoreSession]]:
    """``make_session(session_id, user="alice", **kwargs)``; every session is closed afterwards."""
    sessions: list[ChatstoreSession] = []

    def make(session_id: str, user: str = "alice", **kwargs: Any) -> ChatstoreSession:
        kwargs.setdefault("base_url", server.url)
        kwargs.setdefault("token", server.token(user))
        session = ChatstoreSession(session_id, **kwargs)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.aclose()


# -- ChatKit ----------------------------------------------------------------------------------


@pytest.fixture
async def make_chatkit_store(server: Server) -> AsyncIterator[Callable[..., Any]]:
    """``make_chatkit_store(**kwargs)``: a ``ChatstoreStore`` on ``server`` whose requests run
    as the user named by the context's ``user`` attribute (``token_for``) unless ``token=`` or
    ``token_for=`` is given. Every store is closed afterwards."""
    from chatstore import ChatstoreStore

    stores: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("base_url", server.url)
        if "token" not in kwargs and "token_for" not in kwargs:
            kwargs["token_for"] = lambda context: server.token(context.user)
        store = ChatstoreStore(**kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()
