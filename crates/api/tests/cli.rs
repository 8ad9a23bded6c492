//! The `chatstore` binary as operators and scripts run it.

// A panic in a test is a failed test with a clear location.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatstore::auth::TokenVerifier;
use chatstore::settings::Settings;

const BINARY: &str = env!("CARGO_BIN_EXE_chatstore");

fn temp_sqlite_url(name: &str) -> (String, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("chatstore-cli-{name}-{}.db", std::process::id()));
    (format!("sqlite://{}?mode=rwc", path.display()), path)
}

fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// The `host:port` that a starting `chatstore serve` prints on its first line.
fn listening_address(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("a line");
    line.trim()
        .strip_prefix("chatstore listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned()
}

/// Waits until `/readyz` says the database is open (it is, shortly after the server listens).
fn wait_until_ready(address: &str) {
    let started = Instant::now();
    while !http_get(address, "/readyz").contains("\"ready\"") {
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status;
        }
        assert!(started.elapsed() < limit, "the server did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_prints_its_address_answers_and_stops_cleanly_on_sigterm() {
    let (url, path) = temp_sqlite_url("serve");
    let mut child = Command::new(BINARY)
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("PORT", "0")
        .env_remove("APP_ENV")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chatstore serve");
    let address = listening_address(&mut child);

    let health = http_get(&address, "/healthz");
    assert!(health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("{\"status\":\"ok\"}"), "{health}");
    // The embedded SQLite file is created and migrated just after it starts listening.
    wait_until_ready(&address);
    assert!(path.exists());

    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = wait_for_exit(&mut child, Duration::from_secs(15));
    assert!(exit.success(), "SIGTERM is a clean shutdown: {exit:?}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn token_prints_a_jwt_the_same_configuration_accepts() {
    let output = Command::new(BINARY)
        .args(["token", "alice"])
        .env_remove("APP_ENV")
        .env("APP__AUTH__JWT_SECRET", "cli-test-secret-cli-test-secret-cli")
        .output()
        .expect("run chatstore token");
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let token = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");

    let env = HashMap::from([(
        "APP__AUTH__JWT_SECRET".to_owned(),
        "cli-test-secret-cli-test-secret-cli".to_owned(),
    )]);
    let settings = Settings::load_from_env(&env).unwrap();
    let verifier = TokenVerifier::from_settings(&settings.auth).unwrap();
    assert_eq!(verifier.verify(token).unwrap(), "alice");
    // Another secret rejects it.
    let other = Settings::load_from_env(&HashMap::new()).unwrap();
    assert!(TokenVerifier::from_settings(&other.auth).unwrap().verify(token).is_err());
}

#[test]
fn production_refuses_to_start_with_the_development_secret() {
    let (url, path) = temp_sqlite_url("prod");
    let mut child = Command::new(BINARY)
        .arg("serve")
        .env("APP_ENV", "production")
        .env("DATABASE_URL", &url)
        .env("PORT", "0")
        .env_remove("APP__AUTH__JWT_SECRET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chatstore serve");
    let exit = wait_for_exit(&mut child, Duration::from_secs(15));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(!exit.success());
    assert!(stderr.contains("development JWT secret"), "{stderr}");
    assert!(!path.exists(), "nothing was started, not even the database");
}

/// Runs `chatstore serve` with `env` and its standard error piped (not a terminal), makes it
/// log a few requests, stops it, and returns what it wrote there.
fn logs_of_a_short_run(name: &str, env: &[(&str, &str)]) -> String {
    let (url, path) = temp_sqlite_url(name);
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("PORT", "0")
        .env("APP__SERVER__HOST", "127.0.0.1")
        // Debug: every request is logged, with its span's fields.
        .env("APP__LOG__LEVEL", "debug,sqlx=warn,sea_orm=warn,hyper=info")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start chatstore serve");
    let address = listening_address(&mut child);
    wait_until_ready(&address);
    assert!(http_get(&address, "/healthz").contains("200"));
    assert!(http_get(&address, "/no-such-route").contains("404"));
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = wait_for_exit(&mut child, Duration::from_secs(15));
    assert!(exit.success(), "SIGTERM is a clean shutdown: {exit:?}");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    assert!(stderr.lines().count() >= 3, "the run logged its requests and its shutdown: {stderr}");
    stderr
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let logs = logs_of_a_short_run("plain", &[("APP_ENV", "development")]);
    assert!(!logs.contains('\u{1b}'), "escape codes in logs written to a pipe: {logs:?}");
    assert!(logs.contains("shutting down"), "{logs}");
}

#[test]
fn production_logs_are_json_lines() {
    let logs = logs_of_a_short_run(
        "json",
        &[
            ("APP_ENV", "production"),
            ("APP__AUTH__JWT_SECRET", "cli-test-secret-cli-test-secret-cli"),
            ("APP__DATABASE__MIGRATE_ON_START", "true"),
        ],
    );
    assert!(!logs.contains('\u{1b}'), "escape codes in logs written to a pipe: {logs:?}");
    for line in logs.lines() {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line:?}"));
        assert!(record["level"].is_string() && record["timestamp"].is_string(), "{line}");
    }
    assert!(logs.contains("\"message\":\"shutting down"), "{logs}");
}
