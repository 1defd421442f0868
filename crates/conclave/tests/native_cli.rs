//! The `conclave join` and `conclave record` commands as a person runs
//! them: the real binary against a real server, stopped with a real SIGINT.
//! They show the security code the other members show, leave at once on
//! Ctrl-C whether waiting or admitted (the host's roster drops them, the
//! exit code is 0, the statistics are printed), finish recordings that
//! ffprobe gives a duration, and refuse a bad `--out` before they contact
//! the meeting.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::common::{Api, Meeting, TestServer};
use crate::common::{Ws, native_options, sample};
use conclave_client::ivf::IvfReader;
use conclave_client::session::run;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

/// How soon the others must see a stopped client go.
const LEFT_WITHIN: Duration = Duration::from_secs(2);

/// The longest a step of these tests waits for something that should come.
const PATIENCE: Duration = Duration::from_secs(30);

/// A `conclave` command running, its output collected as it comes.
pub(crate) struct Cli {
    child: Child,
    /// Standard input, for `--interactive` ([`Cli::start_typing`]).
    stdin: Option<std::process::ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let into = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

impl Cli {
    pub(crate) fn start(args: &[&str]) -> Cli {
        Cli::spawn(args, Stdio::null())
    }

    /// [`Cli::start`], with standard input a pipe for [`Cli::type_line`].
    fn start_typing(args: &[&str]) -> Cli {
        Cli::spawn(args, Stdio::piped())
    }

    /// One line typed at the command, as a person would.
    fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("started with start_typing");
        writeln!(stdin, "{line}").expect("typed");
        stdin.flush().expect("flushed");
    }

    fn spawn(args: &[&str], stdin: Stdio) -> Cli {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("conclave starts");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        Cli {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    pub(crate) fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ctrl-C, as a terminal sends it.
    pub(crate) fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the command to end (the output read to its end too).
    pub(crate) async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // The readers finish with the pipes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {PATIENCE:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until standard error holds a line that `pick` takes.
    pub(crate) async fn stderr_line<T>(&self, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = self.stderr().lines().find_map(&pick) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "never printed what was waited for; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn invite(meeting: &Meeting) -> String {
    meeting.view["invite_link"]
        .as_str()
        .expect("invite link")
        .to_string()
}

/// A meeting of `api`'s account without a waiting room: a `join` is in at once.
async fn open_meeting(api: &Api) -> Meeting {
    api.create_meeting(json!({"settings": {"waiting_room": false}}))
        .await
}

/// Reads the host's socket until the waiting room lists `name`; its id.
pub(crate) async fn waits(host: &mut Ws, name: &str) -> u64 {
    loop {
        let room = host.recv_until("waiting_room").await;
        let found = room["waiting"]
            .as_array()
            .expect("waiting list")
            .iter()
            .find(|w| w["name"] == name)
            .and_then(|w| w["id"].as_u64());
        if let Some(id) = found {
            return id;
        }
    }
}

/// Reads the host's socket until the waiting room no longer lists `id`.
async fn no_longer_waits(host: &mut Ws, id: u64) {
    loop {
        let room = host.recv_until("waiting_room").await;
        let waiting = room["waiting"].as_array().expect("waiting list");
        if !waiting.iter().any(|w| w["id"] == id) {
            return;
        }
    }
}

/// Admits `name` from the waiting room; its participant id.
async fn admit(host: &mut Ws, name: &str) -> u64 {
    let id = waits(host, name).await;
    host.send(json!({"type": "admit", "participant": id})).await;
    loop {
        let joined = host.recv_until("participant_joined").await;
        if joined["participant"]["id"] == id {
            return id;
        }
    }
}

/// Reads the host's socket until `id` has left; why.
async fn left(host: &mut Ws, id: u64) -> Value {
    loop {
        let gone = host.recv_until("participant_left").await;
        if gone["participant"] == id {
            return gone["reason"].clone();
        }
    }
}

/// "Security code (epoch N, M people ...): DIGITS" as (N, M, DIGITS).
pub(crate) fn security_code_line(line: &str) -> Option<(u64, usize, String)> {
    let rest = line.strip_prefix("Security code (epoch ")?;
    let (epoch, rest) = rest.split_once(", ")?;
    let (count, rest) = rest.split_once(' ')?;
    let (_, code) = rest.split_once("): ")?;
    Some((epoch.parse().ok()?, count.parse().ok()?, code.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leaves_at_once_on_ctrl_c_while_waiting_and_while_admitted() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": true}}))
        .await;
    let (mut host, _) = server.host_joins(&api, &meeting.id).await;
    let link = invite(&meeting);

    // Waiting: the host sees it go, and it says it never got in.
    let mut waiter = Cli::start(&["join", &link, "--name", "Waiter", "--stats"]);
    let id = waits(&mut host, "Waiter").await;
    waiter.interrupt();
    let asked = Instant::now();
    no_longer_waits(&mut host, id).await;
    assert!(asked.elapsed() < LEFT_WITHIN, "{:?}", asked.elapsed());
    let status = waiter.exit().await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", waiter.stderr());
    let stats: Value = serde_json::from_str(waiter.stdout().trim()).expect("stats JSON");
    assert_eq!(stats["admitted"], false, "{stats}");
    assert_eq!(stats["stopped"], true, "{stats}");

    // Admitted, sending: once it shows a security code, Ctrl-C. The host
    // sees it leave (not drop: no seat kept for a resume), at once.
    let ivf = sample("video-320x240.ivf");
    let ogg = sample("audio-440hz.ogg");
    let mut member = Cli::start(&[
        "join",
        &link,
        "--name",
        "Member",
        "--stats",
        "--send-ivf",
        ivf.to_str().expect("path"),
        "--send-ogg",
        ogg.to_str().expect("path"),
    ]);
    let id = admit(&mut host, "Member").await;
    let (_, _, code) = member.stderr_line(security_code_line).await;
    member.interrupt();
    let asked = Instant::now();
    assert_eq!(left(&mut host, id).await, "left");
    assert!(asked.elapsed() < LEFT_WITHIN, "{:?}", asked.elapsed());
    let status = member.exit().await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", member.stderr());
    let stats: Value = serde_json::from_str(member.stdout().trim()).expect("stats JSON");
    assert_eq!(stats["admitted"], true, "{stats}");
    assert_eq!(stats["stopped"], true, "{stats}");
    assert_eq!(stats["participant"], id, "{stats}");
    assert_eq!(stats["e2ee"]["security_code"], code.as_str(), "{stats}");
    assert_eq!(code.split(' ').count(), 12, "{code}");
    assert!(
        code.split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())),
        "{code}"
    );
    // The group's roster is the group's own: this member alone (the test's
    // host has no MLS member), and the server's host shows as not in it.
    assert_eq!(stats["e2ee"]["roster"], json!([id.to_string()]), "{stats}");
    assert!(
        member.stderr().contains("participant"),
        "a summary on stderr:\n{}",
        member.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_native_clients_show_the_same_security_code() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = open_meeting(&api).await;
    let link = invite(&meeting);
    let mut ada = Cli::start(&["join", &link, "--name", "Ada", "--stats"]);
    let mut bob = Cli::start(&["join", &link, "--name", "Bob", "--stats"]);
    // The first epoch with both in the group, as each prints it.
    let both = |line: &str| security_code_line(line).filter(|(_, n, _)| *n == 2);
    let (epoch_a, _, code_a) = ada.stderr_line(both).await;
    let (epoch_b, _, code_b) = bob.stderr_line(both).await;
    assert_eq!(
        epoch_a,
        epoch_b,
        "A:\n{}\nB:\n{}",
        ada.stderr(),
        bob.stderr()
    );
    assert_eq!(code_a, code_b);
    // Every epoch both printed has the same code on both.
    let codes = |cli: &Cli| -> Vec<(u64, String)> {
        cli.stderr()
            .lines()
            .filter_map(security_code_line)
            .map(|(e, _, c)| (e, c))
            .collect()
    };
    for (epoch, code) in codes(&ada) {
        if let Some((_, theirs)) = codes(&bob).into_iter().find(|(e, _)| *e == epoch) {
            assert_eq!(code, theirs, "epoch {epoch}");
        }
    }
    // Someone else's code is not this one: a different meeting.
    let other = open_meeting(&api).await;
    let mut solo = Cli::start(&["join", &invite(&other), "--name", "Solo"]);
    let (_, _, code_solo) = solo.stderr_line(security_code_line).await;
    assert_ne!(code_solo, code_a);

    for cli in [&mut ada, &mut bob, &mut solo] {
        cli.interrupt();
        assert_eq!(cli.exit().await.code(), Some(0), "{}", cli.stderr());
    }
    let stats: Value = serde_json::from_str(ada.stdout().trim()).expect("stats JSON");
    let e2ee = &stats["e2ee"];
    assert!(e2ee["not_announced"].as_array().is_some_and(Vec::is_empty));
}

/// `conclave join --interactive`, twice: what one types (chat, a hand, a
/// reaction) the other shows, decrypted, by name; a command that cannot
/// be done says why and sends nothing; hostile chat text cannot drive the
/// other's terminal (control characters shown as U+FFFD).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_clients_chat_raise_hands_and_react_to_each_other() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = open_meeting(&api).await;
    let link = invite(&meeting);
    let mut ada = Cli::start_typing(&["join", &link, "--name", "Ada", "--interactive"]);
    let mut bob = Cli::start_typing(&["join", &link, "--name", "Bob", "--interactive"]);
    let both = |line: &str| security_code_line(line).filter(|(_, n, _)| *n == 2);
    ada.stderr_line(both).await;
    bob.stderr_line(both).await;

    ada.type_line("hello Bob");
    let line = |want: &'static str| move |l: &str| l.contains(want).then(|| l.to_string());
    let got = bob.stderr_line(line("hello Bob")).await;
    assert!(
        got.starts_with("Chat from Ada (participant ") && got.ends_with("): hello Bob"),
        "{got}"
    );

    bob.type_line("/hand");
    ada.stderr_line(line("Bob raised their hand.")).await;
    bob.stderr_line(line("You raised your hand.")).await;
    bob.type_line("/react heart");
    ada.stderr_line(line("Bob reacted ❤️ (heart).")).await;
    bob.type_line("/lower");
    ada.stderr_line(line("Bob lowered their hand.")).await;

    // Nothing to vote on: said at once, nothing sent.
    ada.type_line("/vote 1");
    ada.stderr_line(line("There is no poll to answer.")).await;
    // An escape sequence that would clear the other's screen arrives inert.
    ada.type_line("look \u{1b}[2J here");
    let got = bob.stderr_line(line("look ")).await;
    assert!(got.ends_with("look \u{fffd}[2J here"), "{got:?}");

    for cli in [&mut ada, &mut bob] {
        cli.interrupt();
        assert_eq!(cli.exit().await.code(), Some(0), "{}", cli.stderr());
    }
}

/// A scheduled meeting that guests may not join before a host: `conclave
/// join` says why it waits (as the browser does), and is in as soon as the
/// host starts the meeting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_says_it_waits_for_the_host_and_is_in_when_the_host_starts() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": false, "join_before_host": false}}))
        .await;
    let mut guest = Cli::start(&["join", &invite(&meeting), "--name", "Early"]);
    guest
        .stderr_line(|l| l.contains("waiting for a host to join").then_some(()))
        .await;
    assert!(
        security_code_line_in(&guest.stderr()).is_none(),
        "in before the host: {}",
        guest.stderr()
    );
    let (_host, _) = server.host_joins(&api, &meeting.id).await;
    guest.stderr_line(security_code_line).await;
    guest.interrupt();
    assert_eq!(guest.exit().await.code(), Some(0), "{}", guest.stderr());
}

fn security_code_line_in(text: &str) -> Option<(u64, usize, String)> {
    text.lines().find_map(security_code_line)
}

/// ffprobe's duration of a media file, in seconds.
fn ffprobe_duration(path: &Path) -> Option<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (installed by .ci/run)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The largest `.ivf` file in `dir`, and its size.
fn largest_ivf(dir: &Path) -> Option<(PathBuf, u64)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ivf"))
        .filter_map(|p| Some((p.clone(), std::fs::metadata(&p).ok()?.len())))
        .max_by_key(|(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_stops_on_ctrl_c_waiting_or_recording_and_its_video_has_a_duration() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api
        .create_meeting(json!({"settings": {"waiting_room": true}}))
        .await;
    let (mut host, _) = server.host_joins(&api, &meeting.id).await;
    let link = invite(&meeting);
    let dir = tempfile::tempdir().expect("dir");

    // Ctrl-C in the waiting room: gone at once, and it never joins.
    let out = dir.path().join("never");
    let out_arg = out.to_str().expect("path");
    let mut waiting = Cli::start(&["record", &link, "--out", out_arg]);
    let id = waits(&mut host, "Recorder").await;
    waiting.interrupt();
    let asked = Instant::now();
    no_longer_waits(&mut host, id).await;
    assert!(asked.elapsed() < LEFT_WITHIN, "{:?}", asked.elapsed());
    assert_eq!(waiting.exit().await.code(), Some(0), "{}", waiting.stderr());

    // Ada sends the sample video; the recorder records it until Ctrl-C.
    let stop_ada = Arc::new(tokio::sync::Notify::new());
    let mut ada = native_options(&meeting, "Ada");
    ada.stop = Some(Arc::clone(&stop_ada));
    ada.duration = Duration::from_secs(120);
    let ada = tokio::spawn(run(ada));
    admit(&mut host, "Ada").await;
    // A member watching (statistics every second) sees the recording start.
    let mut watcher = Cli::start(&[
        "join",
        &link,
        "--name",
        "Watcher",
        "--stats",
        "--stats-interval",
        "1",
    ]);
    let watcher_id = admit(&mut host, "Watcher").await;
    let out = dir.path().join("rec");
    let out_arg = out.to_str().expect("path");
    let mut recorder = Cli::start(&["record", &link, "--out", out_arg]);
    let id = admit(&mut host, "Recorder").await;
    // A few seconds of video written (the file is buffered: 64 KiB is well
    // past the first buffers).
    let deadline = Instant::now() + PATIENCE;
    while largest_ivf(&out).is_none_or(|(_, n)| n < 64 * 1024) {
        assert!(Instant::now() < deadline, "{}", recorder.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watcher
        .stderr_line(|l| (l == "Recording started").then_some(()))
        .await;
    // Someone arriving now is told in the waiting room, before anyone lets
    // them in; Ctrl-C there takes them off the list.
    let mut late = Cli::start(&["join", &link, "--name", "Late"]);
    let late_id = waits(&mut host, "Late").await;
    late.stderr_line(|l| (l == "Recording started").then_some(()))
        .await;
    late.interrupt();
    no_longer_waits(&mut host, late_id).await;
    assert_eq!(late.exit().await.code(), Some(0), "{}", late.stderr());
    // Its periodic statistics say so too, and name Ada's video with its
    // packets, frames and RTCP figures.
    let from_ada = |line: &str| -> Option<Value> {
        let v: Value = serde_json::from_str(line).ok()?;
        let video = v["received"]
            .as_object()?
            .values()
            .find(|t| t["name"] == "Ada" && t["kind"] == "video")?
            .clone();
        // Frames decrypted too: the first lines with packets can predate
        // the watcher's keys (all its frames then count as undecryptable).
        (v["recording"] == true
            && video["packets"].as_u64()? > 0
            && video["frames"].as_u64()? > 0
            && !video["jitter_ms"].is_null())
        .then_some(video)
    };
    let deadline = Instant::now() + PATIENCE;
    let video = loop {
        if let Some(v) = watcher.stdout().lines().find_map(from_ada) {
            break v;
        }
        assert!(Instant::now() < deadline, "{}", watcher.stdout());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(video["frames"].as_u64().is_some_and(|n| n > 0), "{video}");
    // Frames that came before its keys count as undecryptable: a number.
    assert!(video["undecryptable_frames"].is_u64(), "{video}");

    recorder.interrupt();
    let asked = Instant::now();
    assert_eq!(left(&mut host, id).await, "left");
    assert!(asked.elapsed() < LEFT_WITHIN, "{:?}", asked.elapsed());
    assert_eq!(
        recorder.exit().await.code(),
        Some(0),
        "{}",
        recorder.stderr()
    );
    watcher
        .stderr_line(|l| (l == "Recording stopped").then_some(()))
        .await;
    watcher.interrupt();
    assert_eq!(left(&mut host, watcher_id).await, "left");
    assert_eq!(watcher.exit().await.code(), Some(0), "{}", watcher.stderr());
    // JSON lines, the final one last: no recording any more.
    let last: Value =
        serde_json::from_str(watcher.stdout().lines().last().expect("a line")).expect("JSON line");
    assert_eq!(last["recording"], false, "{last}");
    assert_eq!(last["stopped"], true, "{last}");
    stop_ada.notify_one();
    ada.await.expect("task").expect("Ada's session");

    let (video, _) = largest_ivf(&out).expect("a video file");
    assert!(
        recorder.stdout().contains(video.to_str().expect("path")),
        "the files are listed: {}",
        recorder.stdout()
    );
    let mut frames = IvfReader::new(std::fs::File::open(&video).expect("file")).expect("IVF");
    let mut last = 0;
    let mut count = 0u64;
    while let Some(f) = frames.next_frame().expect("frame") {
        last = f.timestamp;
        count += 1;
    }
    let span = last as f64 / f64::from(frames.header.timebase_den);
    let duration = ffprobe_duration(&video).expect("ffprobe reports a duration");
    // The timestamps' span plus one average frame.
    let expected = span * count as f64 / (count - 1) as f64;
    assert!(
        (duration - expected).abs() < 0.01 && duration > 1.0,
        "ffprobe says {duration} s; the frames span {span} s over {count} frames"
    );
}

#[tokio::test]
async fn record_refuses_a_bad_out_before_contacting_the_meeting() {
    let server = TestServer::start().await;
    let api = server.signed_in("alice").await;
    let meeting = api.create_meeting(json!({})).await;
    // The link points at a listener that counts connections: none may come.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let link = invite(&meeting).replace(&format!(":{}/", server.addr.port()), &format!(":{port}/"));
    assert!(link.contains(&format!(":{port}/j/")), "{link}");

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("taken.ivf");
    std::fs::write(&file, b"not a directory").expect("file");
    let under_file = file.join("sub");
    for (out, says) in [
        (&file, "exists and is not a directory"),
        (&under_file, "cannot create the directory"),
    ] {
        let shown = out.to_str().expect("path");
        let done = Command::new(BIN)
            .args(["record", &link, "--out", shown])
            .output()
            .expect("conclave runs");
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(shown) && stderr.contains(says), "{stderr}");
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the command contacted the server: {other:?}"),
        }
    }
}

/// Ada's browser after signing in through the provider: an MLS signature key
/// made first, an ID token whose nonce commits to it, the token in her leaf.
/// Over a real socket, with the native client's E2EE layer around that
/// member: it answers what the server asks of its MLS state until `stop`.
async fn verified_member(
    addr: std::net::SocketAddr,
    meeting: Meeting,
    issuer: String,
    key: openidconnect::core::CoreRsaPrivateSigningKey,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use conclave_e2ee::openpubkey::{self, RZ_LEN};
    use conclave_e2ee::{IdentityBinding, Member};
    use openidconnect::core::{CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm};
    use openidconnect::{
        Audience, EmptyAdditionalClaims, EndUserEmail, EndUserName, IssuerUrl, LocalizedClaim,
        Nonce, StandardClaims, SubjectIdentifier,
    };

    let (secret, public) = Member::new_signing_key().expect("key");
    let (rz, _) = Member::new_signing_key().expect("random");
    let rz = rz[..RZ_LEN].to_vec();
    let now = chrono::Utc::now();
    let mut name = LocalizedClaim::new();
    name.insert(None, EndUserName::new("Ada Lovelace".into()));
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(issuer).expect("issuer"),
        vec![Audience::new(crate::oidc_tokens::CLIENT_ID.into())],
        now + chrono::Duration::seconds(300),
        now - chrono::Duration::seconds(60),
        StandardClaims::new(SubjectIdentifier::new("u-ada".into()))
            .set_name(Some(name))
            .set_email(Some(EndUserEmail::new("ada@school.example".into()))),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(openpubkey::nonce(&public, &rz))));
    let id_token = CoreIdToken::new(
        claims,
        &key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .expect("sign")
    .to_string();
    let binding = IdentityBinding { id_token, rz };

    let mut ws = crate::common::open_ws(addr, &meeting.id, crate::common::WsOpts::default())
        .await
        .expect("socket");
    ws.send(crate::common::join("Ada Lovelace", &meeting.passcode))
        .await;
    let mut e2ee: Option<conclave_client::e2ee::E2ee> = None;
    loop {
        let frame = tokio::select! {
            f = ws.next(Duration::from_secs(600)) => f,
            _ = stop.changed() => return,
        };
        let Some(crate::common::Frame::Msg(value)) = frame else {
            panic!("Ada: socket closed or silent");
        };
        ws.log.clear();
        let Ok(msg) = serde_json::from_value::<conclave_proto::ServerMessage>(value) else {
            continue;
        };
        if let conclave_proto::ServerMessage::Joined { you, .. } = &msg {
            let member = Member::with_signing_key(
                &you.0.to_string(),
                &secret,
                &public,
                Some(binding.clone()),
            )
            .expect("member");
            e2ee = Some(conclave_client::e2ee::E2ee::with_member(*you, member).expect("e2ee"));
        }
        let Some(e) = e2ee.as_mut() else {
            continue;
        };
        if let Err(err) = e.handle(&msg) {
            panic!("Ada: {err} on {}", msg.kind());
        }
        for out in e.take_messages() {
            ws.send(serde_json::to_value(&out).expect("json")).await;
        }
    }
}

/// A server that trusts the stand-in provider "Fake" at `issuer`, and an
/// open meeting with Ada in it, her leaf carrying that provider's token
/// signed with `key` ([`verified_member`]).
struct AdaMeeting {
    /// Held for the meeting's life: the server stops when it is dropped.
    _server: TestServer,
    meeting: Meeting,
    stop: tokio::sync::watch::Sender<bool>,
    ada: tokio::task::JoinHandle<()>,
}

impl AdaMeeting {
    async fn start(issuer: String, key: openidconnect::core::CoreRsaPrivateSigningKey) -> Self {
        let server = TestServer::start_with(|c| {
            c.oidc = vec![conclave::oidc::ProviderConfig {
                name: "Fake".into(),
                issuer: issuer.clone(),
                client_id: crate::oidc_tokens::CLIENT_ID.into(),
                ..Default::default()
            }];
        })
        .await;
        let meeting = open_meeting(&server.signed_in("alice").await).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let ada = tokio::spawn(verified_member(
            server.addr,
            meeting.clone(),
            issuer,
            key,
            stopped,
        ));
        AdaMeeting {
            _server: server,
            meeting,
            stop,
            ada,
        }
    }

    /// Ada leaves; her task must have ended without a panic.
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.ada.await.expect("Ada's task");
    }
}

/// `conclave join` says whose word each name is, as the browser's badges
/// do: Ada, whose leaf carries the provider's token for her key, is
/// "verified by Fake" (the command took the provider from the server's list
/// and its keys from the provider itself), and the command's own person, a
/// guest the server shows under Ada's name, is flagged as not verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_marks_a_verified_name_and_flags_a_copy_of_it() {
    let (provider, key) = crate::oidc_tokens::provider_with_key().await;
    let issuer = provider.lock().unwrap().issuer.clone();
    let at = AdaMeeting::start(issuer, key).await;

    let mut cli = Cli::start(&["join", &invite(&at.meeting), "--name", "ada lovelace"]);
    let verified = cli
        .stderr_line(|l| l.starts_with("verified: ").then(|| l.to_string()))
        .await;
    assert!(
        verified.starts_with("verified: Ada Lovelace (participant ")
            && verified
                .ends_with(") is verified by Fake (127.0.0.1) as Ada Lovelace, ada@school.example"),
        "{verified}"
    );
    let copy = cli
        .stderr_line(|l| {
            l.contains("is not verified but has the name of")
                .then(|| l.to_string())
        })
        .await;
    assert!(
        copy.starts_with("WARNING: ada lovelace (participant ")
            && copy.contains("has the name of Ada Lovelace (participant "),
        "{copy}"
    );
    assert!(
        cli.stderr().contains(": guest, name from the server"),
        "{}",
        cli.stderr()
    );
    // Without --trust-issuer the command says whose trust list it used.
    assert!(
        cli.stderr().contains(
            "the trust list for verified names came from the server: Fake (http://127.0.0.1:"
        ),
        "{}",
        cli.stderr()
    );
    cli.interrupt();
    assert_eq!(cli.exit().await.code(), Some(0), "{}", cli.stderr());
    at.stop().await;
}

/// A modified server names a provider of its own ("Fake", at its own
/// issuer, whose token vouches for Ada); the user trusts only the school's
/// provider (`--trust-issuer SCHOOL=School`). Ada is then not verified, and
/// the command says it is because the server's provider is not one the user
/// trusts. Trusting that issuer by hand, under a name of the user's, makes
/// her "verified by" that name, not the server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_trusts_only_the_issuers_the_user_pinned() {
    let (provider, key) = crate::oidc_tokens::provider_with_key().await;
    let issuer = provider.lock().unwrap().issuer.clone();
    let (school, _) = crate::oidc_tokens::provider_with_key().await;
    let school = school.lock().unwrap().issuer.clone();
    let at = AdaMeeting::start(issuer.clone(), key).await;

    let pin = format!("{school}=School");
    let mut cli = Cli::start(&["join", &invite(&at.meeting), "--trust-issuer", &pin]);
    let ada = cli
        .stderr_line(|l| {
            l.contains("Ada Lovelace (participant ")
                .then(|| l.to_string())
        })
        .await;
    assert!(
        ada.starts_with("WARNING: Ada Lovelace (participant ")
            && ada.contains(") is not verified: vouched for by Fake (127.0.0.1), a provider the server names that you did not trust (--trust-issuer)"),
        "{ada}"
    );
    let stderr = cli.stderr();
    assert!(
        stderr.contains(&format!(
            "the server names a provider you did not trust: Fake ({issuer})"
        )) && stderr.contains(&format!(
            "the server does not name the provider {school} you trust"
        )) && !stderr.contains("came from the server"),
        "{stderr}"
    );
    ends_having_verified_nobody(&mut cli, 0).await;

    // The same trust list kept in a file, read at each join.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        file.path(),
        format!("# my providers\n\n{issuer}=Our school\n"),
    )
    .expect("write the trust list");
    let path = file.path().to_str().expect("UTF-8 path");
    let mut cli = Cli::start(&["join", &invite(&at.meeting), "--trust-file", path]);
    let verified = cli
        .stderr_line(|l| l.starts_with("verified: ").then(|| l.to_string()))
        .await;
    assert!(
        verified.starts_with("verified: Ada Lovelace (participant ")
            && verified.contains(") is verified by Our school (127.0.0.1) as Ada Lovelace"),
        "{verified}"
    );
    cli.interrupt();
    assert_eq!(cli.exit().await.code(), Some(0), "{}", cli.stderr());
    at.stop().await;
}

/// The stand-in provider behind TLS, as a provider of the operator's own CA
/// would be: a TLS terminator on loopback (a certificate for `localhost`
/// from `ca`) in front of the plain one; the provider's issuer becomes
/// `https://localhost:PORT`.
async fn provider_over_https(provider: &crate::oidc_tokens::Shared, ca: &crate::tls::Ca) -> String {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let plain = provider.lock().unwrap().issuer.clone();
    let backend = plain.trim_start_matches("http://").to_string();
    let leaf = ca.leaf();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der.clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone())),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    let issuer = format!("https://localhost:{port}");
    provider.lock().unwrap().issuer = issuer.clone();
    issuer
}

/// Stops `cli` as a person would (Ctrl-C): it exits cleanly, having said
/// "could not fetch keys of" once for each of the `unreachable` providers
/// and verified nobody.
async fn ends_having_verified_nobody(cli: &mut Cli, unreachable: usize) {
    cli.interrupt();
    let status = cli.exit().await;
    let stderr = cli.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("could not fetch keys of"))
            .count(),
        unreachable,
        "{stderr}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("verified: ")),
        "{stderr}"
    );
}

/// A provider served over HTTPS with a certificate of the operator's own CA
/// is trusted when `--ca-file` names that CA, as the server's connection
/// is: Ada's name is "verified by Fake". Without `--ca-file` the provider's
/// certificate is refused, reported once, and Ada is shown as not verified
/// for that reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_trusts_a_provider_of_the_ca_file() {
    let (provider, key) = crate::oidc_tokens::provider_with_key().await;
    let ca = crate::tls::Ca::new();
    let issuer = provider_over_https(&provider, &ca).await;
    let root = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(root.path(), ca.root_pem()).expect("write CA");
    let at = AdaMeeting::start(issuer, key).await;
    let meeting = &at.meeting;

    let ca_file = root.path().to_str().expect("UTF-8 path");
    let mut cli = Cli::start(&["join", &invite(meeting), "--ca-file", ca_file]);
    let verified = cli
        .stderr_line(|l| l.starts_with("verified: ").then(|| l.to_string()))
        .await;
    assert!(
        verified.starts_with("verified: Ada Lovelace (participant ")
            && verified.contains(") is verified by Fake (localhost)"),
        "{verified}"
    );
    assert!(
        !cli.stderr().contains("could not fetch keys"),
        "{}",
        cli.stderr()
    );
    cli.interrupt();
    assert_eq!(cli.exit().await.code(), Some(0), "{}", cli.stderr());

    // The same provider without the CA: its certificate is refused.
    let mut cli = Cli::start(&["join", &invite(meeting)]);
    let report = cli
        .stderr_line(|l| {
            l.starts_with("could not fetch keys of Fake: ")
                .then(|| l.to_string())
        })
        .await;
    // Ada's proof cannot be checked: not verified, and why.
    let ada_line = cli
        .stderr_line(|l| {
            l.contains("Ada Lovelace (participant ")
                .then(|| l.to_string())
        })
        .await;
    assert!(
        ada_line.starts_with("WARNING: Ada Lovelace (participant ")
            && ada_line.contains(") is not verified: could not fetch keys of Fake: "),
        "{ada_line}"
    );
    ends_having_verified_nobody(&mut cli, 1).await;
    assert!(report.contains("certificate"), "{report}");
    at.stop().await;
}

/// Providers that do not answer (a socket that accepts and never says a
/// word) or cannot be reached (a closed port) hold the join up by at most
/// [`conclave::oidc::PROVIDER_KEYS_DEADLINE`] all together, not a full HTTP
/// timeout each; each is reported once, and the command goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_is_not_held_up_by_providers_that_do_not_answer() {
    let mut silent = Vec::new();
    let mut issuers = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        issuers.push(format!("http://{}", listener.local_addr().expect("addr")));
        silent.push(listener);
    }
    // Accepted and held open, never answered.
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            for l in &silent {
                if let Ok(Ok((s, _))) =
                    tokio::time::timeout(Duration::from_millis(50), l.accept()).await
                {
                    open.push(s);
                }
            }
        }
    });
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let provider = |name: &str, issuer: &str| conclave::oidc::ProviderConfig {
        name: name.into(),
        issuer: issuer.into(),
        client_id: crate::oidc_tokens::CLIENT_ID.into(),
        ..Default::default()
    };
    let server = TestServer::start_with(|c| {
        c.oidc = vec![
            provider("Silent1", &issuers[0]),
            provider("Silent2", &issuers[1]),
            provider("Closed", &closed),
        ];
    })
    .await;
    let api = server.signed_in("alice").await;
    let meeting = open_meeting(&api).await;

    let mut cli = Cli::start(&["join", &invite(&meeting), "--name", "Grace"]);
    // Told by the one deadline for all, not by the HTTP timeout each
    // provider would otherwise wait out in turn (that says another thing).
    let wanted = format!(
        "no answer within {:?}",
        conclave::oidc::PROVIDER_KEYS_DEADLINE
    );
    for name in ["Silent1", "Silent2"] {
        let line = cli
            .stderr_line(|l| {
                l.starts_with(&format!("could not fetch keys of {name}: "))
                    .then(|| l.to_string())
            })
            .await;
        assert!(line.contains(&wanted), "{line}");
    }
    cli.stderr_line(|l| {
        l.starts_with("could not fetch keys of Closed: ")
            .then_some(())
    })
    .await;
    // The command goes on into the meeting, its name the server's.
    cli.stderr_line(|l| l.contains("Grace (participant ").then_some(()))
        .await;
    ends_having_verified_nobody(&mut cli, 3).await;
    held.abort();
}
