//! A crowd: many native members of one E2EE meeting in one process.
//!
//! Each member is a whole `conclave_client` session (signaling, MLS member,
//! a receive-only media peer), as `conclave join` runs one, but a hundred
//! processes of the CLI would cost a 2-core machine more than the meeting
//! does. The members send no media, except the first `--audio N`, which send
//! the Ogg file `--audio-ogg` (looped, SFrame-encrypted as `conclave join
//! --send-ogg` does) with a fixed RFC 6464 level: member 1 the loudest at
//! `--audio-level`, each next one 10 dB quieter (more than the server's 6 dB
//! switching margin, so who is heard is decided by the levels, not by who
//! started first). Only the first `--listeners N` members open (SFrame-decrypt)
//! what they receive; the others count it unopened, as a load generator's
//! members need not hear, and 150 of them opening the 3 loudest speakers'
//! audio starved this process of CPU (docs/benchmarks.md). A test
//! (e2e/large-meeting.test.js) or a
//! person admits them; this program tells on standard output, one JSON line
//! each, when every member it runs is in the same MLS epoch with the same
//! security code and a roster of the size expected:
//!
//! `{"all_in_group":true,"members":151,"epoch":12,"code":"..."}`
//!
//! and, at the end, `{"done":true,"admitted":150,"stopped":150,"errors":[],"heard":5}`,
//! `heard` the listeners that opened audio from another member.
//! It ends when standard input closes or after `--seconds`, whichever is first,
//! and every member says `leave` on its way out.
//!
//! Usage: conclave-crowd INVITE [--members 150] [--others 1] [--seconds 170]
//!        [--stagger-ms 20] [--name Member]
//!        [--audio 0 --audio-ogg FILE --audio-level 10] [--listeners N]

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use conclave_client::Invite;
use conclave_client::session::{self, JoinOptions, MediaOptions, SessionError, SessionEvent};
use conclave_client::signaling::SignalingError;
use conclave_proto::ErrorCode;
use conclave_proto::MediaKind;
use tokio::sync::{Notify, mpsc};

#[derive(Parser)]
#[command(about = "Many native E2EE members of one meeting, without media or with some audio")]
struct Args {
    /// The invite link, e.g. http://127.0.0.1:8080/j/abcd-efgh-jkmn-pqrs#p=passcode
    invite: String,
    /// Members to run.
    #[arg(long, default_value_t = 150)]
    members: usize,
    /// Members of the group not run here (the browser host): the roster every
    /// member must see is members + others.
    #[arg(long, default_value_t = 1)]
    others: usize,
    /// Upper bound on the run, in seconds.
    #[arg(long, default_value_t = 170)]
    seconds: u64,
    /// Time between two members' connections, in milliseconds: the server
    /// lets one address run only a couple of passcode checks at once.
    #[arg(long, default_value_t = 20)]
    stagger_ms: u64,
    /// Members are named "NAME 1" to "NAME N".
    #[arg(long, default_value = "Member")]
    name: String,
    /// The first N members send audio (needs --audio-ogg).
    #[arg(long, default_value_t = 0)]
    audio: usize,
    /// Opus audio in an Ogg file, sent looped by the --audio members.
    #[arg(long, value_name = "FILE")]
    audio_ogg: Option<std::path::PathBuf>,
    /// Member 1's RFC 6464 level (dB below full scale, 0 loudest); each next
    /// audio member's is 10 dB quieter.
    #[arg(long, default_value_t = 10)]
    audio_level: u8,
    /// Only the first N members decrypt what they receive (all by default);
    /// the others count it unopened.
    #[arg(long)]
    listeners: Option<usize>,
}

/// How much quieter each next audio member is than the one before, in dB.
const LEVEL_STEP_DB: usize = 10;

/// Times a member is refused as too many attempts before it gives up.
const RETRIES: u32 = 30;

/// What one member last said about the group: epoch, code, roster size.
type Seen = Option<(u64, String, usize)>;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let invite: Invite = args.invite.parse().context("invite link")?;
    let expected = args.members + args.others;
    let listeners = args.listeners.unwrap_or(args.members);
    anyhow::ensure!(
        args.audio == 0 || args.audio_ogg.is_some(),
        "--audio needs --audio-ogg"
    );

    // Standard input closing ends the run (the test closes it, or dies).
    let end = Arc::new(Notify::new());
    {
        let end = Arc::clone(&end);
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            end.notify_one();
        });
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, SessionEvent)>();
    let mut stops = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..args.members {
        let stop = Arc::new(Notify::new());
        stops.push(Arc::clone(&stop));
        let opts = JoinOptions {
            invite: invite.clone(),
            name: format!("{} {}", args.name, i + 1),
            passcode: None,
            token: None,
            send_ivf: None,
            send_ogg: (i < args.audio).then(|| args.audio_ogg.clone()).flatten(),
            synthetic: false,
            duration: Duration::from_secs(args.seconds),
            patience: Duration::from_secs(args.seconds),
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            record: None,
            stop: Some(stop),
            until: None,
            outside_group: false,
        };
        let tx = tx.clone();
        let delay = Duration::from_millis(args.stagger_ms * i as u64);
        let level = (i < args.audio).then(|| {
            let level = usize::from(args.audio_level) + i * LEVEL_STEP_DB;
            u8::try_from(level.min(127)).unwrap_or(127)
        });
        sessions.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = member(i, opts, level, i >= listeners, tx).await;
            // Said at once: a member that ends early holds the others' wait.
            match &result {
                Ok(r) if !r.stopped => eprintln!(
                    "crowd: member {} ended early: {}",
                    i + 1,
                    r.ended_early.as_deref().unwrap_or("its time was up")
                ),
                Err(e) => eprintln!("crowd: member {} failed: {e}", i + 1),
                Ok(_) => {}
            }
            result
        }));
    }
    drop(tx);

    let started = std::time::Instant::now();
    let mut seen: Vec<Seen> = vec![None; args.members];
    let mut told_epoch = None;
    let deadline = tokio::time::sleep(Duration::from_secs(args.seconds));
    tokio::pin!(deadline);
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some((i, ev)) = ev else { break };
                if let SessionEvent::SecurityCode { epoch, code, roster, .. } = ev {
                    seen[i] = Some((epoch, code, roster.len()));
                    if let Some((epoch, code)) = agreed(&seen, expected)
                        && told_epoch != Some(epoch)
                    {
                        told_epoch = Some(epoch);
                        println!(
                            "{}",
                            serde_json::json!({
                                "all_in_group": true,
                                "members": expected,
                                "epoch": epoch,
                                "code": code,
                            })
                        );
                    }
                }
            }
            _ = progress.tick() => {
                eprintln!("crowd: {:.0} s: {}", started.elapsed().as_secs_f64(), summary(&seen, args.members));
            }
            () = end.notified() => break,
            () = &mut deadline => break,
        }
    }

    for stop in &stops {
        stop.notify_one();
    }
    let (mut admitted, mut stopped, mut errors) = (0, 0, BTreeMap::new());
    let mut heard = 0;
    for s in sessions {
        match s.await {
            Ok(Ok(report)) => {
                admitted += 1;
                stopped += usize::from(report.stopped);
                heard += usize::from(report.media.received.values().any(|t| {
                    t.kind == Some(MediaKind::Audio)
                        && t.participant != Some(report.admission.you)
                        && t.frames > 0
                }));
            }
            Ok(Err(e)) => *errors.entry(e.to_string()).or_insert(0usize) += 1,
            Err(e) => *errors.entry(e.to_string()).or_insert(0usize) += 1,
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "done": true,
            "admitted": admitted,
            "stopped": stopped,
            "errors": errors,
            "heard": heard,
        })
    );
    Ok(())
}

/// The epoch and code every member shows, once all show the same one with
/// `expected` members in the roster.
fn agreed(seen: &[Seen], expected: usize) -> Option<(u64, String)> {
    let (epoch, code, n) = seen.first()?.clone()?;
    let same = seen
        .iter()
        .all(|s| matches!(s, Some((e, c, m)) if *e == epoch && *c == code && *m == n));
    (same && n == expected).then_some((epoch, code))
}

/// How many members are in the group, and in which epochs with which
/// roster sizes, for the progress lines on standard error.
fn summary(seen: &[Seen], members: usize) -> String {
    let mut by_epoch: BTreeMap<(u64, usize), usize> = BTreeMap::new();
    for (epoch, _, n) in seen.iter().flatten() {
        *by_epoch.entry((*epoch, *n)).or_default() += 1;
    }
    let in_group: usize = by_epoch.values().sum();
    let epochs: Vec<String> = by_epoch
        .iter()
        .map(|((e, n), k)| format!("{k} at epoch {e} ({n} in roster)"))
        .collect();
    format!("{in_group}/{members} in the group: {}", epochs.join(", "))
}

/// One member's session, joined again while the server says too many joins
/// from this address are being checked at once.
async fn member(
    i: usize,
    opts: JoinOptions,
    audio_level: Option<u8>,
    count_received_only: bool,
    tx: mpsc::UnboundedSender<(usize, SessionEvent)>,
) -> Result<session::SessionReport, SessionError> {
    let mut tries = 0;
    loop {
        let (etx, mut erx) = mpsc::unbounded_channel();
        let forward = {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(ev) = erx.recv().await {
                    let _ = tx.send((i, ev));
                }
            })
        };
        let extra = MediaOptions {
            events: Some(etx),
            audio_level,
            count_received_only,
            ..MediaOptions::default()
        };
        let result = session::run_with(extra, opts.clone()).await;
        let _ = forward.await;
        match result {
            Err(SessionError::Signaling(SignalingError::Refused {
                code: ErrorCode::TooManyAttempts,
                retry_after,
                ..
            })) if tries < RETRIES => {
                tries += 1;
                let wait = Duration::from_secs(retry_after.unwrap_or(1).max(1));
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}
