//! One WebSocket text frame, read by every parser a frame or a path segment meets.
//!
//! The server reads client frames with [`parse_client_message`]; the native client reads
//! server frames as [`ServerMessage`]. A frame either parses or gets an error code, and what
//! parses comes back equal from its own serialization. The same text also goes to the ID,
//! token, passcode and name parsers, which see strings from paths and message fields.

use conclave_proto::ids::normalize_passcode;
use conclave_proto::{
    ErrorCode, MAX_MESSAGE_BYTES, MeetingId, ResumeToken, ServerMessage, clean_display_name,
    parse_client_message,
};

pub fn run(data: &[u8]) {
    // The WebSocket layer hands over text frames only as valid UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    client_frame(text);
    server_frame(text);
    identifiers(text);
}

fn client_frame(text: &str) {
    match parse_client_message(text) {
        Ok(msg) => {
            let again = serde_json::to_string(&msg).expect("a parsed message serializes");
            assert_eq!(
                parse_client_message(&again),
                Ok(msg.clone()),
                "client message changed in a round trip: {text:?} -> {again:?}"
            );
        }
        Err(code) => assert!(
            matches!(
                code,
                ErrorCode::BadMessage | ErrorCode::UnknownType | ErrorCode::TooLarge
            ),
            "parse error {code:?} is not a parse error code"
        ),
    }
    if text.len() > MAX_MESSAGE_BYTES {
        assert_eq!(parse_client_message(text), Err(ErrorCode::TooLarge));
    }
}

fn server_frame(text: &str) {
    if let Ok(msg) = serde_json::from_str::<ServerMessage>(text) {
        let again = serde_json::to_string(&msg).expect("a parsed message serializes");
        let back: ServerMessage = serde_json::from_str(&again).expect("own output parses");
        assert_eq!(
            back, msg,
            "server message changed in a round trip: {text:?}"
        );
    }
}

fn identifiers(text: &str) {
    if let Ok(id) = text.parse::<MeetingId>() {
        assert_eq!(id.to_string().parse::<MeetingId>().ok(), Some(id));
        assert_eq!(id.compact().parse::<MeetingId>().ok(), Some(id));
    }
    if let Some(token) = ResumeToken::decode(text) {
        assert!(ResumeToken::decode(&token.encode()) == Some(token));
    }
    let once = normalize_passcode(text);
    assert_eq!(normalize_passcode(&once), once, "normalizing is idempotent");
    if let Ok(name) = clean_display_name(text) {
        assert_eq!(clean_display_name(&name).as_deref(), Ok(name.as_str()));
    }
}

/// Every client message and the server messages of docs/protocol.md, as JSON text.
pub fn seeds() -> Vec<Vec<u8>> {
    let token = ResumeToken([7; 16]).encode();
    let client = [
        r#"{"type":"join","name":"Ada","passcode":"7k3m-9q2x-hp"}"#.to_string(),
        r#"{"type":"join","name":"Recorder","recorder":true}"#.to_string(),
        format!(r#"{{"type":"resume","token":"{token}","mls_received":3}}"#),
        r#"{"type":"leave"}"#.to_string(),
        r#"{"type":"admit","participant":2}"#.to_string(),
        r#"{"type":"deny","participant":2}"#.to_string(),
        r#"{"type":"admit_all"}"#.to_string(),
        r#"{"type":"deny_all"}"#.to_string(),
        r#"{"type":"remove","participant":2}"#.to_string(),
        r#"{"type":"stop_media","participant":2,"kind":"screen"}"#.to_string(),
        r#"{"type":"mute_all"}"#.to_string(),
        r#"{"type":"set_media","audio":true,"video":false}"#.to_string(),
        r#"{"type":"rename","participant":2,"name":"Grace"}"#.to_string(),
        r#"{"type":"set_permissions","permissions":{"chat":false,"screen_share":"everyone"}}"#
            .to_string(),
        r#"{"type":"lock"}"#.to_string(),
        r#"{"type":"unlock"}"#.to_string(),
        r#"{"type":"set_role","participant":2,"role":"cohost"}"#.to_string(),
        r#"{"type":"transfer_host","participant":2}"#.to_string(),
        r#"{"type":"suspend_activities"}"#.to_string(),
        r#"{"type":"resume_activities"}"#.to_string(),
        r#"{"type":"end_meeting"}"#.to_string(),
        r#"{"type":"chat","payload":"AAECAwQFBgc="}"#.to_string(),
        r#"{"type":"media_offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n","tracks":[{"mid":"0","kind":"video"}]}"#.to_string(),
        r#"{"type":"media_answer","sdp":"v=0\r\n"}"#.to_string(),
        r#"{"type":"view_size","participant":2,"kind":"video","width":640,"height":360}"#
            .to_string(),
        r#"{"type":"mls_key_package","key_package":"AAEAAQ=="}"#.to_string(),
        r#"{"type":"mls_group_info","group_info":"AAEAAQ=="}"#.to_string(),
        r#"{"type":"mls_commit","commit":"AAEAAQ==","welcome":"AAEAAQ=="}"#.to_string(),
        r#"{"type":"key_frame_request"}"#.to_string(),
    ];
    let server = [
        r#"{"type": "waiting", "you": 2}"#,
        r#"{"type": "joined", "you": 2, "role": "participant", "resume_token": "17wD8W_GvcNsqkev2VAScg", "resume_window": 30, "meeting": {"title": "Weekly sync", "locked": false, "suspended": false, "permissions": {"screen_share": "host_only", "chat": true, "self_unmute": true, "rename_self": false}}, "participants": [{"id": 1, "name": "Ada", "role": "host", "signed_in": true, "audio": false, "video": false, "screen": false, "presence": "connected"}], "waiting": [], "e2ee": {"group_id": "Z3JvdXA=", "external_sender": "c2VuZGVy"}}"#,
        r#"{"type": "participant_updated", "participant": {"id": 2, "name": "Grace", "role": "cohost", "signed_in": false, "audio": true, "video": false, "screen": false, "presence": "connected"}}"#,
        r#"{"type": "participant_left", "participant": 2, "reason": "removed"}"#,
        r#"{"type": "waiting_room", "waiting": [{"id": 3, "name": "Mallory", "signed_in": false}]}"#,
        r#"{"type": "chat", "from": 2, "payload": "hello"}"#,
        r#"{"type": "security_notice", "failed_attempts": 10, "window_secs": 60}"#,
        r#"{"type": "ended", "reason": "ended_by_host"}"#,
        r#"{"type": "error", "code": "too_many_attempts", "message": "too many attempts; retry after 60 s", "retry_after": 60}"#,
        r#"{"type": "mls_message", "message": "AAEAAQ==", "commit_by": 2}"#,
    ];
    let mut seeds: Vec<Vec<u8>> = client
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain(server.iter().map(|s| s.as_bytes().to_vec()))
        .collect();
    seeds.push(b"85tz-70e0-55ch-6zya".to_vec());
    seeds.push(b"8StZ 7OEO 55CH 6ZYA".to_vec());
    seeds
}
