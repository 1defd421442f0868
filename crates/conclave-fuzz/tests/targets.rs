//! Every fuzz target on stable, as CI runs it: the committed seed corpus, freshly made seeds
//! and a bounded number of deterministic mutations of them. A failing input is written to
//! `target/fuzz-failures/` so it can be replayed with `cargo fuzz run <target> <file>` or this
//! test. `CONCLAVE_FUZZ_SCALE=N` multiplies the number of mutations.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use conclave_fuzz::{Target, corpus, targets};

fn target(name: &str) -> Target {
    targets()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"))
}

fn scale() -> usize {
    std::env::var("CONCLAVE_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Runs `name` over its committed corpus, its fresh seeds and `mutations` more inputs.
fn exercise(name: &str, mutations: usize) {
    let target = target(name);
    let committed = corpus::committed(name);
    assert!(
        !committed.is_empty(),
        "fuzz/corpus/{name} has no seeds (cargo run -p conclave-fuzz --example write-seeds)"
    );
    let fresh = (target.seeds)();
    assert!(!fresh.is_empty(), "{name} made no seeds");
    let seeds: Vec<Vec<u8>> = committed.into_iter().chain(fresh).collect();
    let seed = name.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    for (i, input) in corpus::inputs(&seeds, mutations * scale(), seed)
        .iter()
        .enumerate()
    {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (target.run)(input))) {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
            let file = dir.join(format!("{name}-{i}"));
            let saved = std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(&file, input))
                .map(|_| file.display().to_string())
                .unwrap_or_else(|e| format!("(not saved: {e})"));
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: input {i} panicked: {why}\ninput saved as {saved}");
        }
    }
}

#[test]
fn signaling_frames_parse_or_get_an_error_code_and_round_trip() {
    exercise("signaling", 6000);
}

#[test]
fn meeting_core_survives_scripts_and_keeps_the_waiting_room_isolated() {
    exercise("meeting", 600);
}

#[test]
fn http_bodies_are_parsed_or_refused_with_a_4xx() {
    exercise("http_body", 3000);
}

#[test]
fn media_port_datagrams_never_panic_the_router() {
    exercise("udp", 20);
}

#[test]
fn media_link_datagrams_are_counted_once_and_frames_round_trip() {
    exercise("media_link", 6000);
}

#[test]
fn ice_tcp_streams_deframe_as_rfc_4571_reads_them_however_reads_fall() {
    exercise("tcp_frames", 6000);
}

#[test]
fn media_offers_parse_or_are_refused_and_answers_parse_back() {
    exercise("sdp", 300);
}

#[test]
fn mls_messages_at_a_member_are_errors_that_change_nothing() {
    exercise("mls", 40);
}

#[test]
fn mls_messages_at_the_delivery_service_are_errors_that_change_nothing() {
    exercise("delivery", 40);
}

#[test]
fn sframe_frames_decrypt_or_fail_and_own_frames_round_trip() {
    exercise("sframe", 4000);
}

#[test]
fn every_target_has_a_committed_corpus() {
    for t in targets() {
        assert!(
            !corpus::committed(t.name).is_empty(),
            "fuzz/corpus/{} is empty",
            t.name
        );
    }
}
