//! The JSON bodies of the HTTP API, through [`ApiJson`], the extractor every handler takes
//! its body with. The first byte picks the body type (mod 6), the rest is the body.
//!
//! Checked: nothing panics; a body accepted is one JSON object (serde alone would also take
//! an array of the fields); a refused body is answered with a 4xx, never a 5xx.

use std::cell::RefCell;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, header};
use axum::response::IntoResponse;
use conclave::http::account::{Credentials, LinkToken, NewToken, PasswordChange};
use conclave::http::error::ApiJson;
use conclave::http::meetings::{CreateMeeting, UpdateMeeting};
use serde::de::DeserializeOwned;

/// The body types, in selector order.
const BODIES: [&str; 6] = [
    "Credentials",
    "LinkToken",
    "PasswordChange",
    "NewToken",
    "CreateMeeting",
    "UpdateMeeting",
];

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

fn extract<T: DeserializeOwned + Send + 'static>(body: &[u8]) {
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/body")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a request with a fixed method, path and header");
    let result = RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime")
        });
        rt.block_on(ApiJson::<T>::from_request(request, &()))
    });
    match result {
        Ok(_) => assert!(
            serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object()),
            "a body that is not one JSON object was accepted"
        ),
        Err(refusal) => {
            let status = refusal.into_response().status();
            assert!(status.is_client_error(), "a bad body was answered {status}");
        }
    }
}

pub fn run(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match usize::from(selector) % BODIES.len() {
        0 => extract::<Credentials>(body),
        1 => extract::<LinkToken>(body),
        2 => extract::<PasswordChange>(body),
        3 => extract::<NewToken>(body),
        4 => extract::<CreateMeeting>(body),
        _ => extract::<UpdateMeeting>(body),
    }
}

/// The request bodies of docs/protocol.md §14, each behind its selector byte.
pub fn seeds() -> Vec<Vec<u8>> {
    let bodies: [(u8, &str); 8] = [
        (
            0,
            r#"{"username":"admin","password":"correct horse battery"}"#,
        ),
        (1, r#"{"token":"cnl_3q2x7k9m"}"#),
        (
            2,
            r#"{"current_password":"old one here","new_password":"a new one, long"}"#,
        ),
        (2, r#"{"new_password":"first password"}"#),
        (3, r#"{"name":"ci token"}"#),
        (
            4,
            r#"{"title":"Weekly sync","passcode":"our-own-code","settings":{"waiting_room":true,"screen_share":"everyone","max_participants":50}}"#,
        ),
        (4, r#"{}"#),
        (
            5,
            r#"{"title":"Renamed","regenerate_passcode":true,"settings":{"passcode_required":false,"only_signed_in":true,"chat":false}}"#,
        ),
    ];
    bodies
        .iter()
        .map(|(selector, body)| {
            let mut seed = vec![*selector];
            seed.extend_from_slice(body.as_bytes());
            seed
        })
        .collect()
}
