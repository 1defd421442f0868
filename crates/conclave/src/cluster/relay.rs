//! Relaying a meeting's WebSocket to the node that runs the meeting: this
//! node opens a WebSocket to the owner's `internal_url` with the client's
//! cookies, origin and authorization and a [`RELAY_HEADER`] vouching for the
//! client's address, answers the client as the owner answered (its status
//! when it refused, its `Set-Cookie` when it accepted), and copies frames
//! both ways until either side closes, then closes the other.
//!
//! Each direction holds at most one message in flight: a slow reader on one
//! side slows the other side's reading, it does not fill this node's memory.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as UpCloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as UpMessage};

use super::registry::NodeRecord;
use super::route::{RELAY_HEADER, vouch};

/// How long the owner has to accept the relayed WebSocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing either side may take once the other has closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The client's request headers the owner needs: who they are (cookies,
/// API token) and the page they come from (origin check).
const FORWARDED: [header::HeaderName; 4] = [
    header::COOKIE,
    header::ORIGIN,
    header::AUTHORIZATION,
    header::USER_AGENT,
];

/// The path every node serves a meeting's WebSocket on; the relay header
/// is bound to it.
pub fn ws_path(raw_id: &str) -> String {
    format!("/api/v1/meetings/{raw_id}/ws")
}

/// Connects to `owner` for `raw_id`'s WebSocket on behalf of the client at
/// `ip`, and answers the client's upgrade with the owner's answer.
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    ws: WebSocketUpgrade,
    owner: &NodeRecord,
    raw_id: &str,
    headers: &HeaderMap,
    ip: IpAddr,
    secret: &str,
    max_message: usize,
    permit: OwnedSemaphorePermit,
) -> Response {
    let path = ws_path(raw_id);
    let base = owner.internal_url.trim_end_matches('/');
    let url = match base.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => {
            format!("wss://{rest}{path}")
        }
        Some((_, rest)) => format!("ws://{rest}{path}"),
        None => format!("ws://{base}{path}"),
    };
    let mut req = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(node = %owner.node_id, error = %e, "bad internal_url in a node record");
            return unavailable();
        }
    };
    for name in FORWARDED {
        for v in headers.get_all(&name) {
            req.headers_mut().append(name.clone(), v.clone());
        }
    }
    match HeaderValue::from_str(&vouch(secret, ip, &path)) {
        Ok(v) => {
            req.headers_mut().insert(RELAY_HEADER, v);
        }
        Err(_) => return unavailable(),
    }
    // Small frames, each to go at once: no Nagle delay (the last `true`).
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(req, None, true),
    )
    .await;
    let (upstream, answer) = match connected {
        Ok(Ok(ok)) => ok,
        Ok(Err(tungstenite::Error::Http(refused))) => {
            // The owner refused the upgrade (origin, too many connections):
            // the client hears the same.
            let status = StatusCode::from_u16(refused.status().as_u16())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let body = refused.into_body().unwrap_or_default();
            return (status, body).into_response();
        }
        Ok(Err(e)) => {
            tracing::warn!(node = %owner.node_id, error = %e, "could not relay to the meeting's node");
            return unavailable();
        }
        Err(_) => {
            tracing::warn!(node = %owner.node_id, "the meeting's node did not answer the relay in time");
            return unavailable();
        }
    };
    tracing::debug!(node = %owner.node_id, %ip, "relaying a meeting WebSocket");
    let mut resp = ws
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| pump(socket, upstream, permit));
    for v in answer.headers().get_all(header::SET_COOKIE) {
        resp.headers_mut().append(header::SET_COOKIE, v.clone());
    }
    resp
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        "the meeting's node is unavailable\n",
    )
        .into_response()
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Copies frames both ways until one side closes or fails, then closes both.
async fn pump(client: WebSocket, upstream: Upstream, _permit: OwnedSemaphorePermit) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_owner, mut from_owner) = upstream.split();
    let up = async {
        while let Some(Ok(m)) = from_client.next().await {
            let (m, last) = match m {
                Message::Text(t) => (UpMessage::text(t.as_str()), false),
                Message::Binary(b) => (UpMessage::Binary(b), false),
                Message::Close(f) => (
                    UpMessage::Close(f.map(|f| UpCloseFrame {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    })),
                    true,
                ),
                // Each hop answers its own pings.
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if to_owner.send(m).await.is_err() || last {
                return;
            }
        }
    };
    let down = async {
        while let Some(Ok(m)) = from_owner.next().await {
            let (m, last) = match m {
                UpMessage::Text(t) => (Message::Text(t.as_str().into()), false),
                UpMessage::Binary(b) => (Message::Binary(b), false),
                UpMessage::Close(f) => (
                    Message::Close(f.map(|f| CloseFrame {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    })),
                    true,
                ),
                UpMessage::Ping(_) | UpMessage::Pong(_) | UpMessage::Frame(_) => continue,
            };
            if to_client.send(m).await.is_err() || last {
                return;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, to_owner.close()).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, to_client.close()).await;
}
