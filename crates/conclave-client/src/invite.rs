//! Invite links: `http://host:port/j/<meeting id>#p=<passcode>`.

use std::str::FromStr;

use conclave_proto::MeetingId;
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("not a URL: {0}")]
    Url(String),
    #[error("an invite link is http(s)://HOST/j/MEETING-ID#p=PASSCODE")]
    Shape,
    #[error("the meeting ID in the link is malformed")]
    MeetingId,
}

/// What an invite link says: where the server is, which meeting, and the passcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The server's origin, e.g. `http://localhost:8080`.
    pub server: Url,
    pub meeting: MeetingId,
    pub passcode: Option<String>,
}

impl FromStr for Invite {
    type Err = InviteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(s.trim()).map_err(|e| InviteError::Url(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(InviteError::Shape);
        }
        let mut segments = url.path_segments().ok_or(InviteError::Shape)?;
        let (Some("j"), Some(id), None) = (segments.next(), segments.next(), segments.next())
        else {
            return Err(InviteError::Shape);
        };
        let meeting = id.parse().map_err(|_| InviteError::MeetingId)?;
        let passcode = url.fragment().and_then(|f| {
            url::form_urlencoded::parse(f.as_bytes())
                .find(|(k, _)| k == "p")
                .map(|(_, v)| v.into_owned())
        });
        let mut server = url.clone();
        server.set_path("/");
        server.set_fragment(None);
        server.set_query(None);
        Ok(Invite {
            server,
            meeting,
            passcode,
        })
    }
}

impl Invite {
    /// The meeting's WebSocket URL.
    pub fn ws_url(&self) -> String {
        let scheme = if self.server.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        let host = self.server.host_str().unwrap_or("localhost");
        let port = self
            .server
            .port()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "{scheme}://{host}{port}/api/v1/meetings/{}/ws",
            self.meeting
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_invite_link() {
        let i: Invite = "http://localhost:8080/j/abcd-efgh-jkmn-pqrs#p=k3x9m2pq7v"
            .parse()
            .unwrap();
        assert_eq!(i.meeting.to_string(), "abcd-efgh-jkmn-pqrs");
        assert_eq!(i.passcode.as_deref(), Some("k3x9m2pq7v"));
        assert_eq!(
            i.ws_url(),
            "ws://localhost:8080/api/v1/meetings/abcd-efgh-jkmn-pqrs/ws"
        );
    }

    #[test]
    fn link_without_passcode_and_https() {
        let i: Invite = "https://meet.example.org/j/abcdefghjkmnpqrs"
            .parse()
            .unwrap();
        assert_eq!(i.passcode, None);
        assert_eq!(
            i.ws_url(),
            "wss://meet.example.org/api/v1/meetings/abcd-efgh-jkmn-pqrs/ws"
        );
    }

    #[test]
    fn rejects_other_shapes() {
        assert!("ftp://x/j/abcd-efgh-jkmn-pqrs".parse::<Invite>().is_err());
        assert!("http://x/meet/abcd".parse::<Invite>().is_err());
        assert_eq!(
            "http://x/j/short".parse::<Invite>(),
            Err(InviteError::MeetingId)
        );
        assert!("not a url".parse::<Invite>().is_err());
    }
}
