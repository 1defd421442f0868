//! Joining a meeting over its WebSocket: the waiting room, admit and deny,
//! one answer for wrong passcodes and unknown meetings, and the join rate
//! limits per address and per meeting.

mod common;

use std::net::Ipv4Addr;

use common::{Meeting, QUIET, TestServer, WsOpts, join};
use serde_json::{Value, json};

/// A server, alice signed in, and a meeting of hers with the safe defaults.
async fn setup() -> (TestServer, common::Api, Meeting) {
    let server = TestServer::start().await;
    let alice = server.signed_in("alice").await;
    let meeting = alice.create_meeting(json!({"title": "Planning"})).await;
    (server, alice, meeting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_waits_and_the_host_admits_them() {
    let (server, alice, meeting) = setup().await;

    // The guest arrives first: right passcode, into the waiting room.
    let (mut guest, gid) = server.guest_waits(&meeting, "Grace").await;
    assert!(
        guest.guest_cookie().is_some(),
        "a guest browser is given its own cookie"
    );

    // The owner joins with their session, no passcode, as host, and sees who waits.
    let (mut host, joined) = server.host_joins(&alice, &meeting.id).await;
    assert_eq!(joined["meeting"]["title"], "Planning");
    assert_eq!(joined["meeting"]["locked"], false);
    assert_eq!(
        joined["waiting"],
        json!([{"id": gid, "name": "Grace", "signed_in": false}])
    );
    assert_eq!(joined["participants"].as_array().unwrap().len(), 1);
    assert!(joined["resume_token"].as_str().is_some_and(|t| !t.is_empty()));
    let host_id = joined["you"].clone();

    host.send(json!({"type": "admit", "participant": gid})).await;
    let g = guest.recv().await;
    assert_eq!(g["type"], "joined", "{g}");
    assert_eq!(g["you"], gid);
    assert_eq!(g["role"], "participant");
    assert_eq!(g["waiting"], json!([]), "participants never see the waiting room");
    let names: Vec<_> = g["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].clone(), p["name"].clone(), p["role"].clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            (gid.into(), json!("Grace"), json!("participant")),
            (host_id, json!("Host"), json!("host")),
        ]
        .into_iter()
        .map(|(a, b, c): (Value, Value, Value)| (a, b, c))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .into_iter()
        .filter(|_| true)
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .filter(|_| true)
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
}
