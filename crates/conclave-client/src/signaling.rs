//! The client side of the meeting WebSocket: connect, join (waiting as long as
//! the host takes), then exchange messages.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use conclave_proto::{
    ClientMessage, ErrorCode, MeetingState, Participant, ParticipantId, Role, ServerMessage,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::invite::Invite;

#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("the connection failed: {0}")]
    Socket(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server sent something unreadable: {0}")]
    Garbled(String),
    #[error("refused: {message}")]
    Refused {
        code: ErrorCode,
        message: String,
        retry_after: Option<u64>,
    },
    #[error("a host denied entry")]
    Denied,
    #[error("removed from the meeting")]
    Removed,
    #[error("the meeting ended")]
    Ended,
    #[error("timed out waiting for the server")]
    Timeout,
}

/// What a member learns on admission.
#[derive(Debug, Clone)]
pub struct Admission {
    pub you: ParticipantId,
    pub role: Role,
    pub resume_token: String,
    /// How long the server keeps the seat after the socket drops.
    pub resume_window: Duration,
    /// The MLS group's id (`joined.e2ee.group_id`): a resume answered
    /// with another one means the group was rebuilt elsewhere.
    pub group_id: Option<String>,
    pub meeting: MeetingState,
    pub participants: Vec<Participant>,
    /// The TURN servers the server named for this member, with its own
    /// credentials ([`crate::relay`]).
    pub ice_servers: Vec<conclave_proto::IceServer>,
}

impl Admission {
    /// The seat a `joined` gives (none for another message): at the first
    /// join, after a resume, and on entering a breakout room or its parent.
    pub fn from_joined(msg: &ServerMessage) -> Option<Admission> {
        let ServerMessage::Joined {
            you,
            role,
            resume_token,
            resume_window,
            meeting,
            participants,
            ice_servers,
            e2ee,
            ..
        } = msg
        else {
            return None;
        };
        Some(Admission {
            you: *you,
            role: *role,
            resume_token: resume_token.clone(),
            resume_window: Duration::from_secs(*resume_window),
            group_id: e2ee.as_ref().map(|e| e.group_id.clone()),
            meeting: meeting.clone(),
            participants: participants.clone(),
            ice_servers: ice_servers.clone(),
        })
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for SignalingError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        // Kept as text: the library's error is large and callers only report it.
        SignalingError::Socket(e.to_string())
    }
}

pub struct Signaling {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The guest identity the server gave this connection (its
    /// `conclave_guest` cookie), if it gave one: a breakout ticket admits
    /// only the identity it was drawn for, so the next connection (into a
    /// room, or back) presents it ([`Signaling::connect_as`]).
    guest_cookie: Option<String>,
}

/// The guest identity cookie's name (the server's `GUEST_COOKIE`).
const GUEST_COOKIE: &str = "conclave_guest";

/// The value of the guest cookie a handshake response sets, if it sets one.
fn guest_cookie_set(headers: &tokio_tungstenite::tungstenite::http::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?.trim();
            let (name, value) = pair.split_once('=')?;
            (name == GUEST_COOKIE && !value.is_empty()).then(|| value.to_string())
        })
}

impl Signaling {
    /// Opens the meeting's socket; `token` is a personal API token (to join
    /// one's own meeting as host).
    pub async fn connect(invite: &Invite, token: Option<&str>) -> Result<Self, SignalingError> {
        Signaling::connect_with(invite, token, None).await
    }

    /// [`Signaling::connect`], trusting the CA certificates in `ca_file`
    /// (PEM) besides the system's roots when the server is on HTTPS.
    pub async fn connect_with(
        invite: &Invite,
        token: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Self, SignalingError> {
        Signaling::connect_as(invite, token, ca_file, None).await
    }

    /// [`Signaling::connect_with`], as the guest identity `guest_cookie`
    /// (a [`Signaling::guest_cookie`] of an earlier connection).
    pub async fn connect_as(
        invite: &Invite,
        token: Option<&str>,
        ca_file: Option<&Path>,
        guest_cookie: Option<&str>,
    ) -> Result<Self, SignalingError> {
        let url = invite.ws_url();
        let connector = if url.starts_with("wss:") {
            let config = crate::tls::client_config(ca_file)
                .map_err(|e| SignalingError::Connect(e.to_string()))?;
            Connector::Rustls(Arc::new(config))
        } else {
            Connector::Plain
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| SignalingError::Connect(e.to_string()))?;
        if let Some(t) = token {
            let v = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|e| SignalingError::Connect(e.to_string()))?;
            request.headers_mut().insert("authorization", v);
        }
        if let Some(c) = guest_cookie {
            let v = HeaderValue::from_str(&format!("{GUEST_COOKIE}={c}"))
                .map_err(|e| SignalingError::Connect(e.to_string()))?;
            request.headers_mut().insert("cookie", v);
        }
        let (ws, response) =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector))
                .await
                .map_err(|e| SignalingError::Connect(format!("{url}: {e}")))?;
        let guest_cookie =
            guest_cookie_set(response.headers()).or(guest_cookie.map(str::to_string));
        Ok(Signaling { ws, guest_cookie })
    }

    /// The guest identity this connection has (see [`Signaling::connect_as`]).
    pub fn guest_cookie(&self) -> Option<&str> {
        self.guest_cookie.as_deref()
    }

    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), SignalingError> {
        let text =
            serde_json::to_string(msg).map_err(|e| SignalingError::Garbled(e.to_string()))?;
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next server message; `None` once the socket closed.
    pub async fn recv(&mut self) -> Result<Option<ServerMessage>, SignalingError> {
        while let Some(frame) = self.ws.next().await {
            match frame? {
                Message::Text(t) => {
                    return serde_json::from_str(&t)
                        .map(Some)
                        .map_err(|e| SignalingError::Garbled(e.to_string()));
                }
                Message::Close(_) => return Ok(None),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Joins and waits until admitted (however long a host takes), refused,
    /// or `patience` passes without any message.
    pub async fn join(
        &mut self,
        name: &str,
        passcode: Option<&str>,
        recorder: bool,
        patience: Duration,
    ) -> Result<Admission, SignalingError> {
        self.join_noting(name, passcode, recorder, patience, &mut |_| {})
            .await
    }

    /// [`Signaling::join`], telling `recorded` whether the meeting is being
    /// recorded whenever the waiting room says it changed (a person waiting
    /// must know before they are let in).
    pub async fn join_noting(
        &mut self,
        name: &str,
        passcode: Option<&str>,
        recorder: bool,
        patience: Duration,
        recorded: &mut (dyn FnMut(bool) + Send),
    ) -> Result<Admission, SignalingError> {
        let mut recording = false;
        self.send(&ClientMessage::Join {
            name: name.to_string(),
            passcode: passcode.map(str::to_string),
            recorder,
        })
        .await?;
        loop {
            let msg = tokio::time::timeout(patience, self.recv())
                .await
                .map_err(|_| SignalingError::Timeout)??;
            match msg.ok_or(SignalingError::Closed)? {
                ServerMessage::Waiting {
                    you,
                    recording: now,
                } => {
                    tracing::info!(participant = %you, "waiting for a host to admit us");
                    if now != recording {
                        recording = now;
                        recorded(now);
                    }
                }
                // Said so a person at the client knows why nothing happens
                // yet, as the browser says it.
                ServerMessage::WaitingForHost => tracing::info!(
                    "the meeting has not started: waiting for a host to join (guests may not join before a host)"
                ),
                joined @ ServerMessage::Joined { .. } => {
                    if let Some(admission) = Admission::from_joined(&joined) {
                        return Ok(admission);
                    }
                }
                ServerMessage::Error {
                    code,
                    message,
                    retry_after,
                } => {
                    return Err(SignalingError::Refused {
                        code,
                        message,
                        retry_after,
                    });
                }
                ServerMessage::Denied => return Err(SignalingError::Denied),
                ServerMessage::Removed => return Err(SignalingError::Removed),
                ServerMessage::Ended { .. } => return Err(SignalingError::Ended),
                other => tracing::debug!(kind = other.kind(), "ignored before admission"),
            }
        }
    }

    /// Leaves the meeting, then closes the socket with the WebSocket closing
    /// handshake. Without the `leave`, the server would keep the seat for its
    /// resume window and show everyone a member "reconnecting" who is gone.
    ///
    /// The handshake is what makes the `leave` count: a socket dropped right
    /// after it (with the server's messages unread, so the kernel answers
    /// with a reset) lets the server fail its next write and end the
    /// connection as a drop before it reads the `leave` that already
    /// arrived. Waiting for the server's own close frame means it has read
    /// everything sent before ours, `leave` included.
    pub async fn close(mut self) {
        let _ = self.send(&ClientMessage::Leave).await;
        let _ = self.ws.close(None).await;
        let closed = async {
            while let Some(Ok(frame)) = self.ws.next().await {
                if let Message::Close(_) = frame {
                    break;
                }
            }
        };
        if tokio::time::timeout(CLOSE_WAIT, closed).await.is_err() {
            tracing::debug!("the server did not answer our close frame in time");
        }
    }
}

/// How long [`Signaling::close`] waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
