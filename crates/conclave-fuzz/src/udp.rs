//! Datagrams on the media port, into the router as the media worker hands them over
//! ([`Router::accepts`], then [`Router::handle_receive`]). The router has two connected peers,
//! a publisher of audio and video and a subscriber, wired to str0m clients on a virtual clock
//! (no sockets).
//!
//! The input is a sequence of records: a selector byte, a 16-bit big-endian length, the
//! datagram. The selector's low two bits pick the source: the publisher's address, the
//! subscriber's, a stranger's, or the publisher's after 100 ms of virtual time. So the fuzzer
//! reaches every classification (STUN, DTLS, RTP, RTCP, garbage) from known and unknown
//! sources, and str0m's DTLS and SRTP parsing behind a connected peer.
//!
//! Checked: nothing panics, every datagram is counted, and the router still answers timers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::{Event, PeerId, Router, RouterConfig};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Input, Output, Rtc};

const ROUTER: &str = "127.0.0.1:10000";
const PUBLISHER: PeerId = PeerId(1);
const SUBSCRIBER: PeerId = PeerId(2);
const TICK: Duration = Duration::from_millis(1);
/// Records past this many are not read: a bound on one run's cost.
const MAX_RECORDS: usize = 64;

struct Client {
    id: PeerId,
    addr: SocketAddr,
    rtc: Rtc,
    next: Instant,
    sending: Vec<(Mid, MediaKind)>,
}

/// A datagram in flight: from, to, bytes.
type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

pub struct Net {
    pub now: Instant,
    pub router: Router,
    router_addr: SocketAddr,
    clients: Vec<Client>,
    in_flight: VecDeque<Datagram>,
    /// Every datagram a client sent the router, with the selector naming its source.
    pub captured: Vec<(u8, Vec<u8>)>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a fixed, valid socket address")
}

impl Net {
    /// The router and both clients, connected; `None` if str0m refuses its own setup (not this
    /// target's concern: the media crate's tests catch that).
    pub fn connected() -> Option<Net> {
        // A real instant only as the origin of the virtual clock.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let router_addr = addr(ROUTER);
        let router = Router::new(RouterConfig::new(router_addr)).ok()?;
        let mut net = Net {
            now,
            router,
            router_addr,
            clients: Vec::new(),
            in_flight: VecDeque::new(),
            captured: Vec::new(),
        };
        net.join(
            PUBLISHER,
            "127.0.0.2:5000",
            &[MediaKind::Audio, MediaKind::Video],
        )?;
        net.join(SUBSCRIBER, "127.0.0.3:5000", &[])?;
        let end = net.now + Duration::from_secs(5);
        while !net
            .clients
            .iter()
            .all(|c| c.rtc.is_connected() && net.router.is_connected(c.id))
        {
            if net.now >= end {
                return None;
            }
            net.step();
        }
        Some(net)
    }

    fn join(&mut self, id: PeerId, at: &str, sends: &[MediaKind]) -> Option<()> {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(self.now);
        let addr = addr(at);
        rtc.add_local_candidate(Candidate::host(addr, "udp").ok()?);
        let mut change = rtc.sdp_api();
        let mut sending = Vec::new();
        for kind in sends {
            let mid = change.add_media(*kind, Direction::SendOnly, None, None, None);
            sending.push((mid, *kind));
        }
        if sends.is_empty() {
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = change.apply()?;
        self.router.add_peer(id, self.now).ok()?;
        let answer = self.router.accept_offer(id, offer).ok()?;
        rtc.sdp_api().accept_answer(pending, answer).ok()?;
        self.clients.push(Client {
            id,
            addr,
            rtc,
            next: self.now,
            sending,
        });
        self.settle();
        Some(())
    }

    fn step(&mut self) {
        self.now += TICK;
        self.settle();
    }

    /// Timers due now fire, offers are answered, datagrams are delivered, until quiet.
    fn settle(&mut self) {
        let now = self.now;
        for _ in 0..10_000 {
            while let Some(event) = self.router.poll_event() {
                if let Event::Offer { peer, offer, .. } = event
                    && let Some(c) = self.clients.iter_mut().find(|c| c.id == peer)
                    && let Ok(answer) = c.rtc.sdp_api().accept_offer(offer)
                {
                    let _ = self.router.accept_answer(peer, answer);
                }
            }
            while let Some(t) = self.router.poll_transmit() {
                self.in_flight
                    .push_back((t.source, t.destination, t.contents));
            }
            if self.router.poll_timeout().is_some_and(|t| t <= now) {
                self.router.handle_timeout(now);
            }
            for c in &mut self.clients {
                if c.next <= now && c.rtc.handle_input(Input::Timeout(now)).is_err() {
                    c.next = now + Duration::from_secs(3600);
                }
                drain(c, now, &mut self.in_flight);
            }
            let Some((source, destination, contents)) = self.in_flight.pop_front() else {
                return;
            };
            if destination == self.router_addr {
                let selector = self
                    .clients
                    .iter()
                    .position(|c| c.addr == source)
                    .unwrap_or(2) as u8;
                self.captured.push((selector, contents.clone()));
                self.router
                    .handle_receive(now, source, destination, &contents);
            } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == destination)
                && let Ok(contents) = contents.as_slice().try_into()
            {
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination,
                        contents,
                    },
                );
                let _ = c.rtc.handle_input(input);
                drain(c, now, &mut self.in_flight);
            }
        }
    }

    /// The publisher sends a few RTP packets on each of its m-lines, as a real sender would.
    pub fn publish_some(&mut self) {
        let now = self.now;
        let Some(c) = self.clients.iter_mut().find(|c| c.id == PUBLISHER) else {
            return;
        };
        for (mid, kind) in c.sending.clone() {
            let codec = if kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            };
            let Some(pt) = c
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            let mut api = c.rtc.direct_api();
            let Some(ssrc) = api.stream_tx_by_mid(mid, None).map(|s| s.ssrc()) else {
                continue;
            };
            let Some(stream) = api.stream_tx(&ssrc) else {
                continue;
            };
            for seq in 0..3u64 {
                // A VP8 key frame's first bytes, or an Opus frame.
                let payload = if kind == MediaKind::Video {
                    vec![
                        0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 7,
                    ]
                } else {
                    vec![0xfc, 0xff, 0xfe, 0x01]
                };
                stream.write_rtp(
                    RtpWrite::new(pt, (100 + seq).into(), 9000 * seq as u32, now, payload)
                        .marker(true),
                );
            }
        }
        drain(c, now, &mut self.in_flight);
        for _ in 0..20 {
            self.step();
        }
    }

    fn source(&self, selector: u8) -> SocketAddr {
        match selector & 3 {
            1 => self.clients.get(1).map_or(self.router_addr, |c| c.addr),
            2 => SocketAddr::from(([127, 0, 0, 9], 4000 + u16::from(selector >> 2))),
            _ => self.clients.first().map_or(self.router_addr, |c| c.addr),
        }
    }
}

fn drain(c: &mut Client, now: Instant, out: &mut VecDeque<Datagram>) {
    for _ in 0..10_000 {
        match c.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                c.next = t;
                return;
            }
            Ok(Output::Transmit(t)) => out.push_back((t.source, t.destination, t.contents.into())),
            Ok(Output::Event(_)) => {}
            Err(_) => {
                c.next = now + Duration::from_secs(3600);
                return;
            }
        }
    }
}

/// Splits the input into (selector, datagram) records.
fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&selector, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (datagram, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some((selector, datagram))
    })
    .take(MAX_RECORDS)
}

/// Joins datagrams into one input.
pub fn encode(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (selector, datagram) in records {
        let len = u16::try_from(datagram.len()).unwrap_or(u16::MAX);
        out.push(*selector);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&datagram[..usize::from(len)]);
    }
    out
}

pub fn run(data: &[u8]) {
    let Some(mut net) = Net::connected() else {
        return;
    };
    let before = net.router.stats().datagrams_in;
    let mut offered = 0;
    for (selector, datagram) in records(data) {
        if selector & 3 == 3 {
            net.now += Duration::from_millis(100);
        }
        let source = net.source(selector);
        let now = net.now;
        // The worker asks which router takes a new source, then hands the datagram over.
        let _ = net.router.accepts(now, source, net.router_addr, datagram);
        net.router
            .handle_receive(now, source, net.router_addr, datagram);
        offered += 1;
        while net.router.poll_transmit().is_some() {}
        while net.router.poll_event().is_some() {}
    }
    assert_eq!(
        net.router.stats().datagrams_in - before,
        offered,
        "every datagram is counted"
    );
    net.now += Duration::from_secs(1);
    net.router.handle_timeout(net.now);
    assert!(
        net.router.poll_timeout().is_some(),
        "the router still keeps timers"
    );
}

/// What the clients sent the router while connecting and publishing: STUN binding requests,
/// the DTLS handshake, SRTP and SRTCP. One seed with all of it, one per datagram.
pub fn seeds() -> Vec<Vec<u8>> {
    let Some(mut net) = Net::connected() else {
        return Vec::new();
    };
    net.publish_some();
    let mut seeds = vec![encode(&net.captured)];
    let mut seen_kinds = std::collections::HashSet::new();
    for (selector, datagram) in &net.captured {
        // One of each first byte is enough: it is what classifies a datagram (RFC 7983).
        if let Some(first) = datagram.first()
            && seen_kinds.insert((*selector, *first))
        {
            seeds.push(encode(&[(*selector, datagram.clone())]));
        }
    }
    seeds
}
