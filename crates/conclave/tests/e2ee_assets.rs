//! The browser's E2EE module is built into the binary and served as the worker loads it.

use crate::common::{TestServer, header};

async fn fetch(server: &TestServer, path: &str) -> (u16, String, String, Vec<u8>) {
    let response = reqwest::get(server.url(path)).await.expect("GET");
    let status = response.status().as_u16();
    let text = |name: &str| header(&response, name).unwrap_or_default();
    let (mime, csp) = (text("content-type"), text("content-security-policy"));
    let body = response.bytes().await.expect("body").to_vec();
    (status, mime, csp, body)
}

#[tokio::test]
async fn e2ee_module_is_served_as_wasm_with_its_glue() {
    let server = TestServer::start().await;

    let (status, mime, _, wasm) = fetch(&server, "/e2ee/conclave_e2ee_bg.wasm").await;
    assert_eq!(status, 200);
    assert_eq!(mime, "application/wasm");
    assert_eq!(&wasm[..4], b"\0asm", "wasm magic");
    assert_eq!(&wasm[4..8], &[1, 0, 0, 0], "wasm binary version 1");
    assert!(wasm.len() > 100_000, "a real module, {} bytes", wasm.len());

    let (status, mime, csp, js) = fetch(&server, "/e2ee/conclave_e2ee.js").await;
    assert_eq!(status, 200);
    assert!(mime.starts_with("text/javascript"), "{mime}");
    assert!(csp.contains("'wasm-unsafe-eval'"), "{csp}");
    let js = String::from_utf8(js).expect("UTF-8 glue");
    // --target web: an ES module whose default export instantiates the wasm next to it.
    assert!(
        js.contains("conclave_e2ee_bg.wasm"),
        "glue names the module"
    );
    assert!(js.contains("as default"), "an ES module init function");
    for class in ["class Member", "class FrameCrypto"] {
        assert!(js.contains(class), "{class} exported");
    }
    for method in [
        "createGroup",
        "sframeKeys",
        "securityCode",
        "encryptChat",
        "setEpoch",
    ] {
        assert!(js.contains(method), "{method} bound");
    }

    // Every module the glue imports (wasm-bindgen snippets: mls-rs-core's clock) is served.
    for line in js.lines().filter(|l| l.starts_with("import ")) {
        let path = line
            .split('"')
            .nth(1)
            .expect("import path")
            .trim_start_matches("./");
        let (status, mime, _, body) = fetch(&server, &format!("/e2ee/{path}")).await;
        assert_eq!(status, 200, "{path}");
        assert!(mime.starts_with("text/javascript"), "{mime}");
        assert!(
            String::from_utf8(body)
                .expect("UTF-8")
                .contains("export function")
        );
    }

    let (status, _, _, _) = fetch(&server, "/e2ee/other.wasm").await;
    assert_eq!(status, 404);
}
