//! A lean HTTP/1.1 client for the load runs: one keep-alive connection per simulated client,
//! driven by hyper's low-level connection API.
//!
//! The load generator shares the machine's 2 cores with the server and PostgreSQL, so every
//! microsecond it spends is taken from what it measures. `pgbench`, the reference, is a small
//! C program; a pooling client such as reqwest costs several times what this does per request
//! (URL parsing, pool bookkeeping, header maps built anew), which showed as a quarter of the
//! server's own CPU in the turn runs.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One connection to the server, with the caller's bearer token.
#[derive(Debug)]
pub(crate) struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    authorization: HeaderValue,
}

impl Connection {
    /// Connects to `address` (`http://HOST:PORT`) as the user of `token`.
    pub(crate) async fn open(address: &str, token: &str) -> anyhow::Result<Self> {
        let host = address.strip_prefix("http://").unwrap_or(address);
        let stream = TcpStream::connect(host).await?;
        // Requests are small and answered one at a time: send each at once.
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes the connection; a request
            // in flight then fails and reports it.
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            host: HeaderValue::from_str(host)?,
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }

    /// `GET path`, which must answer 200; returns the body.
    pub(crate) async fn get(&mut self, path: &str) -> anyhow::Result<Bytes> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, which must answer 200; returns the body.
    pub(crate) async fn post_json(&mut self, path: &str, body: Bytes) -> anyhow::Result<Bytes> {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Bytes> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status == StatusCode::OK,
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}
