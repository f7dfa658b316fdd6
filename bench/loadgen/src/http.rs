//! One HTTP/1.1 keep-alive connection (hyper's low-level client: no pool, no retries, nothing
//! between the load and the socket), and a blocking probe for start-time measurement.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;

/// Why a request got no answer.
pub type HttpError = Box<dyn std::error::Error + Send + Sync>;

/// A connected keep-alive client.
#[derive(Debug)]
pub struct Connection {
    addr: SocketAddr,
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Self, HttpError> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the server closes or the sender is dropped; a failure shows up as the
            // next request's error.
            let _ = connection.await;
        });
        Ok(Self {
            addr,
            host: addr.to_string(),
            sender,
        })
    }

    /// Reconnects after an error (the old connection is unusable).
    pub async fn reopen(&mut self) -> Result<(), HttpError> {
        *self = Self::open(self.addr).await?;
        Ok(())
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host);
        if let Some(key) = api_key {
            request = request.header("x-api-key", key);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// A blocking `GET path` on a fresh connection; the status code, or `None` when nothing answers
/// yet. Used while a server starts, from a thread that has nothing else to do.
pub fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_nodelay(true).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
