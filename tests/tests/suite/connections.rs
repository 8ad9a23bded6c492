//! Hostile and careless clients: connections that stall mid-request, sit idle, or come in
//! greater numbers than the server serves. The accept loop does not depend on the database, so
//! these run on SQLite only.

use std::time::Duration;

use chatstore_tests::{Answer, Backend, TestApp, with_app_configured, within};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for the server to close a connection it should close in about a
/// second: generous, as the machine may be busy.
const CLOSE_WITHIN: Duration = Duration::from_secs(20);

fn address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Waits until the server closes `stream` (end of file or reset), reading and discarding
/// whatever it sends first; returns what it sent.
async fn closed_by_server(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    within(CLOSE_WITHIN, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => received.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

/// Sends one keep-alive `GET /healthz` on `stream` and reads its whole answer.
async fn healthz_on(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).ends_with("{\"status\":\"ok\"}") {
        let read = within(CLOSE_WITHIN, stream.read(&mut buffer)).await.unwrap();
        assert!(read > 0, "closed mid-answer: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// A few hundred clients send half a request line and stop. Normal clients are still served
/// meanwhile, and the stalled connections are closed once the header timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_clients_are_served_while_half_requests_pile_up() {
    const STALLED: usize = 300;
    with_app_configured(
        Backend::Sqlite,
        |s| {
            s.server.header_read_timeout_secs = 2;
            s.server.max_connections = STALLED + 50;
        },
        async |app| {
            let mut stalled = Vec::new();
            for _ in 0..STALLED {
                let mut stream = TcpStream::connect(address(app)).await.unwrap();
                stream.write_all(b"GET /sessions/s/it").await.unwrap();
                stalled.push(stream);
            }
            for round in 0..20 {
                let answer = within(
                    Duration::from_secs(10),
                    app.post(
                        "/sessions/s/items",
                        "alice",
                        &json!({"items": [{"round": round}]}).to_string(),
                    ),
                )
                .await;
                assert_eq!(answer.status, 200, "{}", answer.text);
            }
            assert_eq!(app.db.sessions().item_count("alice", "s").await.unwrap(), 20);
            for stream in &mut stalled {
                let sent = closed_by_server(stream).await;
                assert!(sent.is_empty(), "a stalled request is closed unanswered: {sent}");
            }
        },
    )
    .await;
}

/// A kept-alive connection is closed once it has been idle for the idle timeout, and so is one
/// that never sends anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_timeout() {
    with_app_configured(
        Backend::Sqlite,
        |s| s.server.idle_timeout_secs = 1,
        async |app| {
            let mut kept_alive = TcpStream::connect(address(app)).await.unwrap();
            let mut silent = TcpStream::connect(address(app)).await.unwrap();
            let first = healthz_on(&mut kept_alive).await;
            assert!(first.starts_with("HTTP/1.1 200"), "{first}");
            assert!(!first.to_ascii_lowercase().contains("connection: close"), "{first}");
            assert_eq!(closed_by_server(&mut kept_alive).await, "");
            assert_eq!(closed_by_server(&mut silent).await, "");
        },
    )
    .await;
}

/// A Server-Sent Events answer that stays quiet for longer than the idle timeout is a request
/// in flight, and is never cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_outlives_the_idle_timeout() {
    with_app_configured(
        Backend::Sqlite,
        |s| {
            s.server.idle_timeout_secs = 1;
            s.server.header_read_timeout_secs = 1;
            // The echo pauses longer than the timeouts before each word.
            s.responder.echo_delay_ms = 2500;
        },
        async |app| {
            let answer =
                app.post("/chat/run", "alice", &json!({"input": "quiet words"}).to_string()).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            let events: Vec<String> = answer
                .text
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .map(|data| serde_json::from_str::<serde_json::Value>(data).unwrap())
                .map(|event| event["type"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                events,
                ["run.started", "output_text.delta", "output_text.delta", "run.completed"],
                "{}",
                answer.text
            );
            assert!(answer.text.contains("quiet") && answer.text.contains("words"));
        },
    )
    .await;
}

/// Past the connection cap a client is told so with a 503 and `Retry-After`, and is served
/// again once connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_cap_a_client_gets_a_503() {
    const CAP: usize = 3;
    with_app_configured(
        Backend::Sqlite,
        |s| s.server.max_connections = CAP,
        async |app| {
            // Each held connection has been answered once, so it is accepted and counted.
            let mut held = Vec::new();
            for _ in 0..CAP {
                let mut stream = TcpStream::connect(address(app)).await.unwrap();
                assert!(healthz_on(&mut stream).await.starts_with("HTTP/1.1 200"));
                held.push(stream);
            }
            let refused = Answer::read(
                within(CLOSE_WITHIN, reqwest::Client::new().get(app.url("/healthz")).send())
                    .await
                    .unwrap(),
            )
            .await;
            refused.assert_error(503, "unavailable");
            assert_eq!(refused.header("retry-after"), Some("1"));
            assert_eq!(refused.header("connection"), Some("close"));

            drop(held);
            within(CLOSE_WITHIN, async {
                loop {
                    let client = reqwest::Client::new();
                    if let Ok(response) = client.get(app.url("/healthz")).send().await
                        && response.status() == 200
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
        },
    )
    .await;
}
