//! WebSocket clients of a meeting: how to open one (from which loopback
//! address, with which cookie, token or origin), and a client that records
//! every frame it gets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use super::TIMEOUT;

/// Opens a meeting WebSocket to the server at `addr`; the handshake's error
/// when refused.
pub async fn open_ws(
    addr: SocketAddr,
    meeting: &str,
    opts: WsOpts,
) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{addr}/api/v1/meetings/{meeting}/ws");
    let mut req = url.into_client_request()?;
    let headers = req.headers_mut();
    if let Some(c) = &opts.cookie {
        headers.insert("cookie", HeaderValue::from_str(c).expect("cookie header"));
    }
    if let Some(t) = &opts.bearer {
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).expect("bearer header"),
        );
    }
    if let Some(o) = &opts.origin {
        headers.insert("origin", HeaderValue::from_str(o).expect("origin header"));
    }
    let stream = tcp_from(opts.source, addr).await?;
    let (stream, resp) = tokio_tungstenite::client_async(req, stream).await?;
    let set_cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    Ok(Ws {
        stream,
        log: Vec::new(),
        set_cookies,
        closed: false,
    })
}

/// A TCP connection to `to`, from the loopback address `from` when given
/// (Linux answers on all of 127.0.0.0/8), so that tests can play many clients.
pub async fn tcp_from(from: Option<Ipv4Addr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    match from {
        None => TcpStream::connect(to).await,
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
            socket.connect(to).await
        }
    }
}

/// The `join` message.
pub fn join(name: &str, passcode: &str) -> Value {
    json!({"type": "join", "name": name, "passcode": passcode})
}

/// How to open a meeting WebSocket.
#[derive(Debug, Clone, Default)]
pub struct WsOpts {
    /// A `Cookie` header (session and/or guest cookie).
    pub cookie: Option<String>,
    /// An API token for `Authorization: Bearer`.
    pub bearer: Option<String>,
    /// The loopback address to connect from (default 127.0.0.1).
    pub source: Option<Ipv4Addr>,
    pub origin: Option<String>,
}

impl WsOpts {
    pub fn from(ip: Ipv4Addr) -> WsOpts {
        WsOpts {
            source: Some(ip),
            ..WsOpts::default()
        }
    }

    pub fn cookie(c: String) -> WsOpts {
        WsOpts {
            cookie: Some(c),
            ..WsOpts::default()
        }
    }
}

/// What the next read from a socket brought.
#[derive(Debug)]
pub enum Frame {
    Msg(Value),
    Closed,
}

/// A meeting WebSocket client that records every message it receives.
pub struct Ws {
    pub stream: WebSocketStream<TcpStream>,
    /// Every text message received, in order.
    pub log: Vec<Value>,
    /// `Set-Cookie` headers of the handshake response.
    pub set_cookies: Vec<String>,
    closed: bool,
}

impl Ws {
    /// The `conclave_guest=...` cookie the server gave this browser, to send
    /// again from the same browser.
    pub fn guest_cookie(&self) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let pair = c.split(';').next()?.trim();
            pair.starts_with("conclave_guest=")
                .then(|| pair.to_string())
        })
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    /// Sends a frame, reporting (not panicking on) a connection the server closed.
    pub async fn try_send(&mut self, msg: Message) -> Result<(), tungstenite::Error> {
        self.stream.send(msg).await
    }

    /// The next message or the closing of the socket, or `None` if nothing
    /// came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Frame> {
        if self.closed {
            return Some(Frame::Closed);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = tokio::time::timeout_at(deadline, self.stream.next()).await;
            let frame = match got {
                Err(_) => return None,
                Ok(f) => f,
            };
            match frame {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str())
                        .unwrap_or_else(|e| panic!("server sent non-JSON {t:?}: {e}"));
                    self.log.push(v.clone());
                    return Some(Frame::Msg(v));
                }
                Some(Ok(Message::Binary(b))) => panic!("server sent a binary frame: {b:?}"),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    self.closed = true;
                    return Some(Frame::Closed);
                }
            }
        }
    }

    /// The next message; panics if the socket closes or nothing comes.
    pub async fn recv(&mut self) -> Value {
        match self.next(TIMEOUT).await {
            Some(Frame::Msg(v)) => v,
            Some(Frame::Closed) => panic!("socket closed; received so far: {:#?}", self.log),
            None => panic!("no message within {TIMEOUT:?}; received: {:#?}", self.log),
        }
    }

    /// Skips messages until one of type `ty` arrives, and returns it.
    pub async fn recv_until(&mut self, ty: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == ty {
                return v;
            }
        }
    }

    /// Skips messages until a `chat` with this payload arrives, and returns it.
    pub async fn recv_chat(&mut self, payload: &str) -> Value {
        loop {
            let v = self.recv_until("chat").await;
            if v["payload"] == payload {
                return v;
            }
        }
    }

    /// The next message, which must be an error with this code.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], "error", "expected error {code}, got {v}");
        assert_eq!(v["code"], code, "expected error {code}, got {v}");
        v
    }

    /// Skips other messages until an error arrives; it must have this code.
    pub async fn recv_error(&mut self, code: &str) -> Value {
        let v = self.recv_until("error").await;
        assert_eq!(v["code"], code, "expected error {code}, got {v}");
        v
    }

    /// Asserts that nothing arrives (nor does the socket close) for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(f) = self.next(wait).await {
            panic!("expected silence, got {f:?}");
        }
    }

    /// Reads until the server closes the socket; returns what came first.
    pub async fn expect_closed(&mut self) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            match self.next(TIMEOUT).await {
                Some(Frame::Msg(v)) => got.push(v),
                Some(Frame::Closed) => return got,
                None => panic!("socket still open after {TIMEOUT:?}; got {got:#?}"),
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
