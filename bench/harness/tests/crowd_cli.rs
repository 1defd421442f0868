//! The crowd program as e2e/large-meeting.test.js runs it. Being an
//! integration test of this package also makes `cargo test --workspace
//! --no-run` (scripts/build-server, which e2e/run calls) build
//! target/debug/conclave-crowd.

use std::process::Command;

#[test]
fn a_link_that_is_not_an_invite_is_refused_before_anyone_connects() {
    let out = Command::new(env!("CARGO_BIN_EXE_conclave-crowd"))
        .args(["http://127.0.0.1:9/not-an-invite", "--members", "2"])
        .output()
        .expect("the crowd program runs");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("invite link"), "{said}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", out.stdout);
}
