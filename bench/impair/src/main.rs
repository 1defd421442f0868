//! `impair`: a user-space network impairment program for the network bench
//! (bench/network). This kernel has no `sch_netem`, so netfilter hands every
//! packet to be impaired to this program through an NFQUEUE (iptables'
//! `-j NFQUEUE --queue-num N`, an nftables rule through nft_compat: the
//! kernel lacks nftables' own `queue` expression); it drops some and
//! releases the others after a delay, each with its own verdict. Held packets
//! stay in the kernel's queue meanwhile.
//!
//!     impair --queue 0 --delay-ms 40 --jitter-ms 10 --loss 0.03
//!     impair --queue 0 --delay-ms 40 --jitter-ms 10 --burst 0.01,0.25,0,0.5
//!     impair --queue 0 --delay-ms 40 --jitter-ms 10 --cap-port 40123 --cap-kbps 300
//!
//! Every `--report-secs` it prints a JSON line with what it has seen and
//! dropped. Stop it with a signal: packets still held are then dropped by
//! the kernel, as a link going down would.

mod model;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use nfq::{Queue, Verdict};

use crate::model::{Cap, Fate, Impairment, Loss, Profile};

/// Packets the kernel may hold for us at once (the default is 1024: less
/// than a second of a meeting's packets at 40 ms of delay is fine, but a
/// burst of key frames should not be dropped by the queue itself).
const QUEUE_MAX_LEN: u32 = 16_384;

/// Longest sleep when nothing is due, so new packets wait at most this.
const IDLE_SLEEP: Duration = Duration::from_micros(300);

#[derive(Parser, Debug)]
#[command(about = "Delay, jitter and loss on an nftables NFQUEUE")]
struct Args {
    /// The NFQUEUE number nftables' `queue num` sends to.
    #[arg(long, default_value_t = 0)]
    queue: u16,
    /// Mean one-way delay added to each packet, in milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Each packet's delay is drawn uniformly within delay ± jitter.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Independent random loss, as a fraction (0.03 is 3 %).
    #[arg(long, default_value_t = 0.0, conflicts_with = "burst")]
    loss: f64,
    /// Gilbert–Elliott burst loss: TO_BAD,TO_GOOD,LOSS_GOOD,LOSS_BAD
    /// (per-packet chances of changing state, and the loss in each state).
    #[arg(long, value_parser = parse_burst)]
    burst: Option<Loss>,
    /// UDP packets to this destination port also cross a bottleneck of
    /// `--cap-kbps` (one receiver on a slow link; the bench's capped
    /// subscriber). Repeat the flag for each of the receiver's ports: all
    /// share the one bottleneck. A browser's ICE may move to another of its
    /// local candidates (another port) while the capped one is congested,
    /// and so leave a cap on one port behind.
    #[arg(long, requires = "cap_kbps")]
    cap_port: Vec<u16>,
    /// The bottleneck's rate, in kbit/s.
    #[arg(long, requires = "cap_port")]
    cap_kbps: Option<u64>,
    /// The bottleneck's drop-tail buffer, in milliseconds of its rate.
    #[arg(long, default_value_t = 250)]
    cap_queue_ms: u64,
    /// How often to print counters (JSON, one line), in seconds.
    #[arg(long, default_value_t = 10)]
    report_secs: u64,
}

fn parse_burst(s: &str) -> Result<Loss, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>().map_err(|e| format!("{x}: {e}")))
        .collect::<Result<_, _>>()?;
    let [to_bad, to_good, good, bad] = v[..] else {
        return Err("four numbers: TO_BAD,TO_GOOD,LOSS_GOOD,LOSS_BAD".into());
    };
    if v.iter().any(|p| !(0.0..=1.0).contains(p)) || to_bad + to_good <= 0.0 {
        return Err("probabilities between 0 and 1, and TO_BAD + TO_GOOD > 0".into());
    }
    Ok(Loss::Burst {
        to_bad,
        to_good,
        good,
        bad,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.loss) {
        bail!("--loss is a fraction between 0 and 1");
    }
    let loss = match args.burst {
        Some(b) => b,
        None if args.loss > 0.0 => Loss::Random(args.loss),
        None => Loss::None,
    };
    let profile = Profile {
        delay: Duration::from_millis(args.delay_ms),
        jitter: Duration::from_millis(args.jitter_ms.min(args.delay_ms)),
        loss,
    };
    let mut impairment = Impairment::new(profile);
    let mut cap = args
        .cap_kbps
        .map(|k| Cap::new(k * 1_000, Duration::from_millis(args.cap_queue_ms)));
    let origin = Instant::now();
    let mut rng = rand::rng();

    let mut queue =
        Queue::open().context("opening the netfilter queue socket (needs CAP_NET_ADMIN)")?;
    queue
        .bind(args.queue)
        .with_context(|| format!("binding NFQUEUE {}", args.queue))?;
    queue.set_queue_max_len(args.queue, QUEUE_MAX_LEN)?;
    queue.set_nonblocking(true);
    eprintln!(
        "impair: queue {} delay {:?} ± {:?}, loss {:?} (mean {:.2} %), cap {:?} kbit/s to port {:?}",
        args.queue,
        profile.delay,
        profile.jitter,
        profile.loss,
        100.0 * profile.loss.mean(),
        args.cap_kbps,
        args.cap_port,
    );

    // Release time and arrival number (ties keep arrival order) -> packet.
    let mut held = BTreeMap::new();
    let mut arrivals: u64 = 0;
    let report_every = Duration::from_secs(args.report_secs.max(1));
    let mut next_report = Instant::now() + report_every;
    loop {
        let mut busy = false;
        loop {
            let mut msg = match queue.recv() {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading the queue"),
            };
            busy = true;
            let mut fate = impairment.decide(&mut rng);
            if let (Some(cap), Fate::Delay(d)) = (cap.as_mut(), fate)
                && udp_destination(msg.get_payload()).is_some_and(|p| args.cap_port.contains(&p))
            {
                let now = Instant::now().saturating_duration_since(origin);
                fate = match cap.pass(now, msg.get_payload().len()) {
                    Some(wait) => Fate::Delay(d + wait),
                    None => Fate::Drop,
                };
            }
            match fate {
                Fate::Drop => {
                    msg.set_verdict(Verdict::Drop);
                    queue.verdict(msg)?;
                }
                Fate::Delay(d) if d.is_zero() => {
                    msg.set_verdict(Verdict::Accept);
                    queue.verdict(msg)?;
                }
                Fate::Delay(d) => {
                    arrivals += 1;
                    held.insert((Instant::now() + d, arrivals), msg);
                }
            }
        }
        let now = Instant::now();
        while let Some(entry) = held.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let mut msg = entry.remove();
            msg.set_verdict(Verdict::Accept);
            queue.verdict(msg)?;
            busy = true;
        }
        if now >= next_report {
            next_report = now + report_every;
            let line = serde_json::json!({
                "seen": impairment.seen,
                "dropped": impairment.dropped,
                "held": held.len(),
                "cap_passed": cap.as_ref().map(|c| c.passed),
                "cap_dropped": cap.as_ref().map(|c| c.dropped),
            });
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        if !busy {
            let until_due = held
                .keys()
                .next()
                .map_or(IDLE_SLEEP, |(at, _)| at.saturating_duration_since(now));
            std::thread::sleep(until_due.min(IDLE_SLEEP));
        }
    }
}

/// The destination port of an IPv4 or IPv6 UDP packet (without IPv6
/// extension headers), if it is one.
fn udp_destination(ip: &[u8]) -> Option<u16> {
    let (protocol, header) = match ip.first()? >> 4 {
        4 => (*ip.get(9)?, usize::from(ip[0] & 0x0f) * 4),
        6 => (*ip.get(6)?, 40),
        _ => return None,
    };
    if protocol != 17 {
        return None;
    }
    Some(u16::from_be_bytes([
        *ip.get(header + 2)?,
        *ip.get(header + 3)?,
    ]))
}
