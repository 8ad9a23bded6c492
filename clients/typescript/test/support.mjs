// The test harness: real chatstore servers on fresh databases (SQLite, and PostgreSQL databases
// created for the run and dropped afterwards), tokens, raw HTTP to check what the server stored,
// and a fault-injecting proxy.
//
// The binary is CHATSTORE_BIN (scripts/typescript-tests sets it). PostgreSQL is reached with
// psql at CHATSTORE_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432); when it is
// unreachable the PostgreSQL cases are skipped with a loud reason, except under CI=true, where
// they fail.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe } from "node:test";

const PG_URL = (process.env.CHATSTORE_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432").replace(
  /\/+$/,
  "",
);
const IN_CI = ["true", "1", "yes"].includes((process.env.CI ?? "").trim().toLowerCase());

export const BINARY = process.env.CHATSTORE_BIN;
if (!BINARY) throw new Error("set CHATSTORE_BIN to the chatstore binary (scripts/typescript-tests does)");

function psql(sql) {
  return spawnSync("psql", [`${PG_URL}/postgres`, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, PGCONNECT_TIMEOUT: "5" },
  });
}

/** Why PostgreSQL cannot be used, or undefined when it answers. */
const postgresProblem = (() => {
  const done = psql("SELECT 1");
  if (done.error) return String(done.error);
  if (done.status !== 0 || done.stdout.trim() !== "1") {
    return (done.stderr || done.stdout).trim() || `psql exited ${done.status}`;
  }
  return undefined;
})();

/**
 * `describe(title)` once per backend, each with one fresh server on a fresh database, started
 * before its tests and stopped (and the database dropped) after them. `body(server)` declares
 * the tests; `server` is ready inside them.
 */
export function onBothBackends(title, body) {
  for (const backend of ["sqlite", "postgres"]) {
    let skip = false;
    if (backend === "postgres" && postgresProblem !== undefined) {
      const reason = `PostgreSQL at ${PG_URL} is unreachable: ${postgresProblem}`;
      if (IN_CI) throw new Error(`${reason} (CI=true: the postgres backend must be tested)`);
      skip = `!!! POSTGRES BACKEND NOT TESTED !!! ${reason}`;
    }
    describe(`${title} [${backend}]`, { skip }, () => {
      const server = new Server(backend);
      before(() => server.start());
      after(() => server.stop());
      body(server);
    });
  }
}

/** A running `chatstore serve` on its own database, and raw HTTP helpers. */
export class Server {
  constructor(backend) {
    this.backend = backend;
    this.url = "";
    this.directory = mkdtempSync(join(tmpdir(), `chatstore-ts-${backend}-`));
    this.logPath = join(this.directory, "server.log");
    this.tokens = new Map();
  }

  async start() {
    if (this.backend === "postgres") {
      this.database = `chatstore_ts_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
      const created = psql(`CREATE DATABASE "${this.database}"`);
      assert.equal(created.status, 0, `CREATE DATABASE failed: ${created.stderr}`);
      this.env = { DATABASE_URL: `${PG_URL}/${this.database}` };
    } else {
      this.env = { DATABASE_URL: `sqlite://${this.directory}/chatstore.db?mode=rwc` };
    }
    this.env = { ...process.env, APP_ENV: "test", PORT: "0", ...this.env };
    const log = openSync(this.logPath, "w");
    this.process = spawn(BINARY, ["serve"], {
      cwd: this.directory,
      env: this.env,
      stdio: ["ignore", "pipe", log],
    });
    closeSync(log);
    const lines = createInterface({ input: this.process.stdout });
    const timer = setTimeout(() => this.process.kill("SIGKILL"), 60_000);
    try {
      for await (const line of lines) {
        const match = /listening on (https?:\/\/\S+)/.exec(line);
        if (match) {
          this.url = match[1].replace(/\/+$/, "");
          break;
        }
      }
    } finally {
      clearTimeout(timer);
    }
    assert.ok(this.url, `chatstore serve did not start\n${this.logTail()}`);
    await this.waitReady();
  }

  /** The server listens at once but serves only once its database is open. */
  async waitReady() {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        if ((await fetch(`${this.url}/readyz`)).ok) return;
      } catch {
        // Not answering yet.
      }
      assert.ok(Date.now() < deadline, `chatstore serve was not ready in 60 s\n${this.logTail()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop() {
    try {
      if (this.process && this.process.exitCode === null) {
        const exited = once(this.process, "exit");
        this.process.kill("SIGTERM");
        const [code] = await exited;
        assert.equal(code, 0, `chatstore serve exited with ${code} after SIGTERM\n${this.logTail()}`);
      }
    } finally {
      if (this.database) {
        const dropped = psql(`DROP DATABASE IF EXISTS "${this.database}" WITH (FORCE)`);
        assert.equal(dropped.status, 0, `DROP DATABASE failed: ${dropped.stderr}`);
      }
      rmSync(this.directory, { recursive: true, force: true });
    }
  }

  logTail(lines = 40) {
    try {
      return `server log (tail):\n${readFileSync(this.logPath, "utf8").split("\n").slice(-lines).join("\n")}`;
    } catch {
      return "(no server log)";
    }
  }

  /** A JWT for `user` that this server accepts, from `chatstore token`. */
  token(user) {
    if (!this.tokens.has(user)) {
      const token = execFileSync(BINARY, ["token", user], { env: this.env, encoding: "utf8" }).trim();
      assert.equal(token.split(".").length, 3, `not a JWT: ${token}`);
      this.tokens.set(user, token);
    }
    return this.tokens.get(user);
  }

  /** Raw HTTP as `user`, to check the server independently of the client under test. */
  async request(method, path, { user = "alice", json, headers = {} } = {}) {
    const response = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${this.token(user)}`,
        ...(json === undefined ? {} : { "Content-Type": "application/json" }),
        ...headers,
      },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
  }

  /** What the server holds for a session, read over raw HTTP. */
  async storedItems(sessionId, user = "alice") {
    const answer = await this.request("GET", `/sessions/${encodeURIComponent(sessionId)}/items`, { user });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return answer.body.items;
  }
}

/**
 * An HTTP proxy in front of `target` that can inject faults. `fault(request, index)` is called
 * for every request (`{method, url, headers, body}`, numbered from 0) and returns:
 * - `"drop"`: forward it, let the server answer (so it has committed), then close the
 *   connection without answering: the client sees a connection failure;
 * - `"hang"`: forward it, let the server answer, then never answer the client;
 * - `"502"`: forward it, then answer 502 instead of the server's answer;
 * - `"503"`: answer 503 with `Retry-After: 0` without forwarding;
 * - anything else: forward it and pass the answer back.
 */
export async function startFaultyProxy(target, fault = () => undefined) {
  const requests = [];
  const proxy = http.createServer(async (incoming, outgoing) => {
    const chunks = [];
    for await (const chunk of incoming) chunks.push(chunk);
    const request = {
      method: incoming.method,
      url: incoming.url,
      headers: incoming.headers,
      body: Buffer.concat(chunks).toString("utf8"),
    };
    const index = requests.push(request) - 1;
    const kind = fault(request, index);
    if (kind === "503") {
      outgoing.writeHead(503, { "Content-Type": "application/json", "Retry-After": "0" });
      outgoing.end(JSON.stringify({ error: { code: "unavailable", message: "injected" } }));
      return;
    }
    const headers = { ...incoming.headers };
    delete headers.host;
    delete headers.connection;
    const answer = await fetch(`${target}${incoming.url}`, {
      method: incoming.method,
      headers,
      body: chunks.length ? Buffer.concat(chunks) : undefined,
    });
    const body = Buffer.from(await answer.arrayBuffer());
    if (kind === "hang") {
      // Left open until the client gives up or the proxy closes.
    } else if (kind === "drop") {
      outgoing.socket.destroy();
    } else if (kind === "502") {
      outgoing.writeHead(502, { "Content-Type": "text/plain" });
      outgoing.end("bad gateway (injected)");
    } else {
      const passed = {};
      for (const [name, value] of answer.headers) {
        if (!["content-length", "content-encoding", "transfer-encoding", "connection"].includes(name)) {
          passed[name] = value;
        }
      }
      outgoing.writeHead(answer.status, passed);
      outgoing.end(body);
    }
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    requests,
    close: async () => {
      proxy.closeAllConnections();
      proxy.close();
      await once(proxy, "close");
    },
  };
}

/** A session id no other test uses. */
export function uniqueId(prefix) {
  return `${prefix}-${randomUUID()}`;
}
