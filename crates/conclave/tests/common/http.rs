//! HTTP clients of the API: one browser each, with its own cookie jar, or a
//! program with an API token.

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::cookie::{CookieStore, Jar};
use serde_json::{Value, json};

use super::{TIMEOUT, TestServer, WsOpts};

/// A meeting as the API returned it.
#[derive(Debug, Clone)]
pub struct Meeting {
    pub id: String,
    pub passcode: String,
    pub view: Value,
}

/// An HTTP client with its own cookie jar (one browser).
pub struct Api {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    base: String,
    bearer: Option<String>,
}

impl Api {
    pub fn new(server: &TestServer) -> Api {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .timeout(TIMEOUT)
            .build()
            .expect("http client");
        Api {
            client,
            jar,
            base: server.url(""),
            bearer: None,
        }
    }

    /// The same browser (cookies) talking to a restarted server.
    pub fn rebase(&mut self, server: &TestServer) {
        let cookies = self.jar.cookies(&self.base.parse().expect("url"));
        let jar = Arc::new(Jar::default());
        let url: reqwest::Url = server.url("").parse().expect("url");
        if let Some(c) = cookies {
            for pair in c.to_str().expect("cookie text").split("; ") {
                jar.add_cookie_str(pair, &url);
            }
        }
        self.client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .timeout(TIMEOUT)
            .build()
            .expect("http client");
        self.jar = jar;
        self.base = server.url("");
    }

    /// A client that authenticates with an API token instead of cookies.
    pub fn with_bearer(server: &TestServer, token: &str) -> Api {
        let mut api = Api::new(server);
        api.bearer = Some(token.to_string());
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `Cookie` header this browser would send to the server.
    pub fn cookie_header(&self) -> Option<String> {
        self.jar
            .cookies(&self.base.parse().expect("url"))
            .map(|v| v.to_str().expect("cookie text").to_string())
    }

    /// Options for a WebSocket opened by this client (its cookies or token).
    pub fn ws_opts(&self) -> WsOpts {
        WsOpts {
            cookie: self.cookie_header(),
            bearer: self.bearer.clone(),
            ..WsOpts::default()
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.client.request(method, self.url(path));
        if let Some(t) = &self.bearer {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    /// Sends a request; returns the status and the body as JSON (`Null` when
    /// empty, a string when not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read(rb.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn sign_in(&self, user: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/auth/signin",
            json!({"username": user, "password": password}),
        )
        .await
    }

    /// Creates a meeting (status 201 asserted).
    pub async fn create_meeting(&self, body: Value) -> Meeting {
        let (status, view) = self.post("/api/v1/meetings", body).await;
        assert_eq!(status, StatusCode::CREATED, "create meeting: {view}");
        Meeting {
            id: view["id"].as_str().expect("id").to_string(),
            passcode: view["passcode"].as_str().unwrap_or_default().to_string(),
            view,
        }
    }

    /// The signed-in host's meetings, as JSON.
    pub async fn meetings(&self) -> Value {
        let (status, list) = self.get("/api/v1/meetings").await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list
    }
}

/// A response's status and body.
pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// A response header's value as text; `None` when absent or not visible ASCII.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
