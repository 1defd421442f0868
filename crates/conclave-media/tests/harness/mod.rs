//! An in-process network for router tests: client `Rtc`s (ordinary, non-lite
//! offerers, RTP mode) and one [`Router`], wired by handing each side's
//! datagrams to the other on a virtual clock. No sockets, no sleeping, no
//! randomness beyond what str0m draws for its own ids and keys; delivery is
//! instant and in order unless a test puts a [`Link`] on the router's side,
//! so runs are deterministic in everything the tests look at.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_media::{Event as RouterEvent, ForwardedTrack, PeerId, Router, RouterConfig};
use str0m::change::SdpPendingOffer;
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// Virtual time advances in steps of this size.
pub const TICK: Duration = Duration::from_millis(1);

pub const ROUTER_ADDR: &str = "10.0.0.1:10000";

/// The start of a VP8 RTP payload (descriptor included): with a size, a key
/// frame whose header says that size, which is how the router learns a
/// layer's dimensions; without, a delta frame that starts a partition.
/// Tests pad it to the length they want.
pub fn vp8_start(key_size: Option<(u16, u16)>) -> Vec<u8> {
    match key_size {
        Some((w, h)) => {
            let mut p = vec![0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a];
            p.extend_from_slice(&w.to_le_bytes());
            p.extend_from_slice(&h.to_le_bytes());
            p
        }
        None => vec![0x10, 0x31, 0x02, 0x00],
    }
}

/// A client: an ordinary WebRTC endpoint like a browser or the native client.
pub struct Client {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub next: Instant,
    /// Everything its `Rtc` reported, with the time.
    pub events: Vec<(Instant, Event)>,
    /// The m-lines it sends on, in the order asked for.
    pub sending: Vec<(Mid, MediaKind)>,
    /// Its outgoing datagrams are lost (the client went silent).
    pub silent: bool,
}

/// What a test wants to know about a received RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub at: Instant,
    pub mid: Option<Mid>,
    pub ssrc: Ssrc,
    pub seq: u64,
    pub timestamp: u32,
    pub pt: Pt,
    pub marker: bool,
    pub payload: Vec<u8>,
}

impl Client {
    pub fn drain(&mut self, now: Instant, out: &mut VecDeque<Datagram>) {
        loop {
            match self.rtc.poll_output().expect("client rtc output") {
                Output::Timeout(t) => {
                    self.next = t;
                    return;
                }
                Output::Transmit(t) => {
                    if !self.silent {
                        out.push_back(Datagram {
                            source: t.source,
                            destination: t.destination,
                            contents: t.contents.into(),
                        });
                    }
                }
                Output::Event(e) => self.events.push((now, e)),
            }
        }
    }

    pub fn ssrc_of(&mut self, mid: Mid) -> Ssrc {
        self.rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .expect("send stream")
            .ssrc()
    }

    pub fn pt_of(&self, codec: Codec) -> Pt {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .expect("codec configured")
            .pt()
    }

    /// Every RTP packet received, in arrival order.
    pub fn received(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        for (at, e) in &self.events {
            if let Event::RtpPacket(p) = e {
                out.push(Received {
                    at: *at,
                    mid: None,
                    ssrc: p.header.ssrc,
                    seq: *p.seq_no,
                    timestamp: p.header.timestamp,
                    pt: p.header.payload_type,
                    marker: p.header.marker,
                    payload: p.payload.to_vec(),
                });
            }
        }
        for r in &mut out {
            r.mid = self.rtc.direct_api().stream_rx(&r.ssrc).map(|s| s.mid());
        }
        out
    }

    pub fn keyframe_requests(&self) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::KeyframeRequest(_)))
            .count()
    }

    pub fn is_connected(&self) -> bool {
        self.rtc.is_connected()
    }
}

pub struct Datagram {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// A signaling exchange the harness carried out for the router.
#[derive(Debug, Clone)]
pub enum Signal {
    Offer {
        peer: PeerId,
        tracks: Vec<ForwardedTrack>,
    },
    Connected(PeerId),
    Disconnected(PeerId),
    Closed(PeerId),
    ActiveSpeaker(PeerId),
    /// The router told subscriber `peer` its video on `mid` is paused for
    /// congestion, or forwarded again.
    VideoPaused {
        peer: PeerId,
        mid: Mid,
        paused: bool,
    },
    /// Dynacast: the router told `peer` which layers of `mid` to send.
    LayersWanted {
        at: Instant,
        peer: PeerId,
        mid: Mid,
        rids: Vec<String>,
    },
}

/// What the network does with a datagram the router sends to a client.
pub enum Fate {
    Arrive,
    Lose,
    /// Arrives later, at this instant (on a queueing link).
    ArriveAt(Instant),
}

/// Decides the fate of each datagram the router sends at an instant.
pub type Link = Box<dyn FnMut(Instant, &Datagram) -> Fate>;

pub struct Net {
    pub now: Instant,
    pub router: Router,
    pub router_addr: SocketAddr,
    pub clients: Vec<Client>,
    pub signals: Vec<Signal>,
    in_flight: VecDeque<Datagram>,
    /// Datagrams a link holds, with the instant each arrives, in order.
    held: VecDeque<(Instant, Datagram)>,
    /// The path from the router to the clients; instant and lossless if
    /// none.
    pub link: Option<Link>,
    /// When set, datagrams reach the router as the server's media worker
    /// hands them over: a known source straight to its peer
    /// ([`Router::handle_receive_from`]), a new one to
    /// [`Router::handle_receive`], whose answer is remembered here.
    pub steering: Option<HashMap<SocketAddr, PeerId>>,
}

impl Net {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    /// A network whose router's configuration `adjust` changed.
    pub fn with_config(adjust: impl FnOnce(&mut RouterConfig)) -> Self {
        // A real instant only as the origin of the virtual clock.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let router_addr: SocketAddr = ROUTER_ADDR.parse().unwrap();
        let mut config = RouterConfig::new(router_addr);
        adjust(&mut config);
        let router = Router::new(config).expect("router");
        Net {
            now,
            router,
            router_addr,
            clients: Vec::new(),
            signals: Vec::new(),
            in_flight: VecDeque::new(),
            held: VecDeque::new(),
            link: None,
            steering: None,
        }
    }

    pub fn client(&mut self, id: PeerId) -> &mut Client {
        self.clients
            .iter_mut()
            .find(|c| c.id == id)
            .expect("known client")
    }

    /// A client joins: it offers `sends` (send-only m-lines; a receive-only
    /// audio line if empty, as the native client does) and the router
    /// answers. Returns once the harness delivered the answer.
    pub fn join(&mut self, id: PeerId, addr: &str, sends: &[MediaKind]) {
        let rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(self.now);
        self.join_with(id, addr, sends, rtc)
            .expect("router answers");
    }

    /// Like [`Net::join`] with the client's own `Rtc` (other codecs, say).
    /// Returns the router's refusal, if it refuses the offer.
    pub fn join_with(
        &mut self,
        id: PeerId,
        addr: &str,
        sends: &[MediaKind],
        mut rtc: Rtc,
    ) -> Result<(), conclave_media::MediaError> {
        let addr: SocketAddr = addr.parse().unwrap();
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mut sending = Vec::new();
        for kind in sends {
            let mid = change.add_media(*kind, Direction::SendOnly, None, None, None);
            sending.push((mid, *kind));
        }
        if sends.is_empty() {
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending): (_, SdpPendingOffer) = change.apply().unwrap();
        self.router.add_peer(id, self.now).expect("add peer");
        let answer = self.router.accept_offer(id, offer)?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("client takes answer");
        let mut client = Client {
            id,
            addr,
            rtc,
            next: self.now,
            events: Vec::new(),
            sending,
            silent: false,
        };
        client.drain(self.now, &mut self.in_flight);
        self.clients.push(client);
        self.settle();
        Ok(())
    }

    /// A client joins sending one video m-line as simulcast with `rids`
    /// (smallest first, as a browser lists "q", "h", "f") and, if `audio`,
    /// an audio m-line. Returns (video mid, audio mid).
    pub fn join_simulcast(
        &mut self,
        id: PeerId,
        addr: &str,
        rids: &[&str],
        audio: bool,
    ) -> (Mid, Option<Mid>) {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            // Per-layer send statistics (NACKs received), for the tests.
            .set_stats_interval(Some(Duration::from_millis(200)))
            .build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut simulcast = Simulcast::new();
        for rid in rids {
            simulcast.send.push(SimulcastLayer::new(rid));
        }
        let mut change = rtc.sdp_api();
        let video = change.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            None,
            None,
            Some(simulcast),
        );
        let mut sending = vec![(video, MediaKind::Video)];
        let audio_mid = audio.then(|| {
            let mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            sending.push((mid, MediaKind::Audio));
            mid
        });
        let (offer, pending) = change.apply().unwrap();
        assert!(
            offer.to_sdp_string().contains("a=simulcast:send"),
            "the offer declares simulcast"
        );
        self.router.add_peer(id, self.now).expect("add peer");
        let answer = self.router.accept_offer(id, offer).expect("router answers");
        assert!(
            answer.to_sdp_string().contains("a=simulcast:recv"),
            "the router accepts simulcast"
        );
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("client takes answer");
        let mut client = Client {
            id,
            addr,
            rtc,
            next: self.now,
            events: Vec::new(),
            sending,
            silent: false,
        };
        client.drain(self.now, &mut self.in_flight);
        self.clients.push(client);
        self.settle();
        (video, audio_mid)
    }

    /// The client writes `write` on its m-line `mid`, simulcast layer `rid`.
    pub fn send_write(&mut self, id: PeerId, mid: Mid, rid: Option<&str>, write: RtpWrite) {
        let now = self.now;
        let client = self
            .clients
            .iter_mut()
            .find(|c| c.id == id)
            .expect("known client");
        let mut api = client.rtc.direct_api();
        let ssrc = api
            .stream_tx_by_mid(mid, rid.map(Rid::from))
            .expect("send stream")
            .ssrc();
        api.stream_tx(&ssrc).expect("send stream").write_rtp(write);
        client.drain(now, &mut self.in_flight);
        self.settle();
    }

    /// An Opus packet with an RFC 6464 `level` (-dBov: 0 loud, -127 silent).
    pub fn send_audio_level(&mut self, id: PeerId, mid: Mid, seq: u64, timestamp: u32, level: i8) {
        let now = self.now;
        let pt = self.client(id).pt_of(Codec::Opus);
        let write = RtpWrite::new(pt, seq.into(), timestamp, now, vec![0xf8, 0xff, 0xfe]).ext_vals(
            ExtensionValues {
                audio_level: Some(level),
                voice_activity: Some(level > -50),
                ..Default::default()
            },
        );
        self.send_write(id, mid, None, write);
    }

    /// The client renegotiates: new send-only m-lines for `add`, and the
    /// m-lines in `stop` set inactive (it stops sending on them). Returns the
    /// new m-lines.
    pub fn reoffer(&mut self, id: PeerId, add: &[MediaKind], stop: &[Mid]) -> Vec<Mid> {
        let now = self.now;
        let client = self
            .clients
            .iter_mut()
            .find(|c| c.id == id)
            .expect("known client");
        let mut change = client.rtc.sdp_api();
        let mut added = Vec::new();
        for kind in add {
            let mid = change.add_media(*kind, Direction::SendOnly, None, None, None);
            added.push(mid);
        }
        for mid in stop {
            change.set_direction(*mid, Direction::Inactive);
        }
        let (offer, pending) = change.apply().expect("a change to offer");
        client.drain(now, &mut self.in_flight);
        let answer = self.router.accept_offer(id, offer).expect("router answers");
        let client = self
            .clients
            .iter_mut()
            .find(|c| c.id == id)
            .expect("known client");
        client
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("client takes answer");
        for (mid, kind) in added.iter().zip(add) {
            client.sending.push((*mid, *kind));
        }
        client.drain(now, &mut self.in_flight);
        self.settle();
        added
    }

    /// Carries out the router's signaling: offers go to the client, answers
    /// come back.
    pub fn pump_signaling(&mut self) {
        while let Some(e) = self.router.poll_event() {
            match e {
                RouterEvent::Offer {
                    peer,
                    offer,
                    tracks,
                } => {
                    self.signals.push(Signal::Offer {
                        peer,
                        tracks: tracks.clone(),
                    });
                    let now = self.now;
                    let Some(client) = self.clients.iter_mut().find(|c| c.id == peer) else {
                        continue;
                    };
                    let answer = client
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .expect("client accepts router offer");
                    client.drain(now, &mut self.in_flight);
                    self.router
                        .accept_answer(peer, answer)
                        .expect("router takes answer");
                }
                // These tests run with forwarding on by default: nothing to decide.
                RouterEvent::Published { .. } => {}
                RouterEvent::Connected { peer } => self.signals.push(Signal::Connected(peer)),
                RouterEvent::Disconnected { peer } => self.signals.push(Signal::Disconnected(peer)),
                RouterEvent::Closed { peer } => self.signals.push(Signal::Closed(peer)),
                RouterEvent::ActiveSpeaker { peer } => {
                    self.signals.push(Signal::ActiveSpeaker(peer))
                }
                RouterEvent::VideoPaused { peer, mid, paused } => {
                    self.signals.push(Signal::VideoPaused { peer, mid, paused })
                }
                RouterEvent::LayersWanted { peer, mid, rids } => {
                    self.signals.push(Signal::LayersWanted {
                        at: self.now,
                        peer,
                        mid,
                        rids: rids.iter().map(|r| r.to_string()).collect(),
                    })
                }
            }
        }
    }

    /// Delivers everything in flight, and everything that causes, until the
    /// network is quiet at the current instant.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            self.pump_signaling();
            while let Some(t) = self.router.poll_transmit() {
                let d = Datagram {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents,
                };
                match self.link.as_mut().map_or(Fate::Arrive, |l| l(self.now, &d)) {
                    Fate::Arrive => self.in_flight.push_back(d),
                    Fate::Lose => {}
                    Fate::ArriveAt(at) => {
                        // In arrival order, so a link with jitter reorders.
                        let i = self.held.partition_point(|(t, _)| *t <= at);
                        self.held.insert(i, (at, d));
                    }
                }
            }
            let Some(d) = self.in_flight.pop_front() else {
                // Quiet, unless a timer is due right now (str0m sends
                // written packets on its next timeout, which is "now").
                if self.fire_due_timers() {
                    continue;
                }
                return;
            };
            if d.destination == self.router_addr {
                self.deliver_to_router(d.source, &d.contents);
            } else if let Some(client) = self.clients.iter_mut().find(|c| c.addr == d.destination) {
                let input = Input::Receive(
                    self.now,
                    Receive {
                        proto: Protocol::Udp,
                        source: d.source,
                        destination: d.destination,
                        contents: d
                            .contents
                            .as_slice()
                            .try_into()
                            .expect("router sends valid datagrams"),
                    },
                );
                client.rtc.handle_input(input).expect("client input");
                client.drain(self.now, &mut self.in_flight);
                // Handed back as the server's worker does, so the tests
                // forward through reused buffers too.
                self.router.recycle(d.contents);
            }
        }
        panic!("the network did not settle");
    }

    /// Runs the timers due at the current instant; false if none was.
    fn fire_due_timers(&mut self) -> bool {
        let now = self.now;
        let mut fired = false;
        if self.router.poll_timeout().is_some_and(|t| t <= now) {
            self.router.handle_timeout(now);
            fired = true;
        }
        for c in &mut self.clients {
            if c.next <= now {
                c.rtc
                    .handle_input(Input::Timeout(now))
                    .expect("client timeout");
                c.drain(now, &mut self.in_flight);
                fired = true;
            }
        }
        fired
    }

    /// One tick of virtual time: timers fire, the network settles.
    pub fn step(&mut self) {
        self.now += TICK;
        while let Some((at, _)) = self.held.front()
            && *at <= self.now
        {
            let (_, d) = self.held.pop_front().expect("just looked");
            self.in_flight.push_back(d);
        }
        self.fire_due_timers();
        self.settle();
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Steps until `done` holds; panics after `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(self.now < end, "condition not met within {limit:?}");
            self.step();
        }
    }

    /// Runs until every client and the router's view of it are connected,
    /// and every router offer is answered.
    pub fn connect_all(&mut self) {
        self.run_until(Duration::from_secs(5), |net| {
            net.clients
                .iter()
                .all(|c| c.is_connected() && net.router.is_connected(c.id))
        });
    }

    /// The client writes one RTP packet on its m-line `mid`, as a real
    /// sender would (its own SSRC, sequence numbers and timestamps).
    #[allow(clippy::too_many_arguments)]
    pub fn send_rtp(
        &mut self,
        id: PeerId,
        mid: Mid,
        pt: Pt,
        seq: u64,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) {
        self.send_frame(id, mid, pt, seq, timestamp, &[payload], marker);
    }

    /// The client writes `packets` on its m-line `mid` at once, sequence
    /// numbers from `first_seq`, all with `timestamp` (one frame; `marker`
    /// on the last), and they reach the router together, as a frame's
    /// packets do from a real sender.
    #[allow(clippy::too_many_arguments)]
    pub fn send_frame(
        &mut self,
        id: PeerId,
        mid: Mid,
        pt: Pt,
        first_seq: u64,
        timestamp: u32,
        packets: &[&[u8]],
        marker: bool,
    ) {
        let now = self.now;
        let client = self
            .clients
            .iter_mut()
            .find(|c| c.id == id)
            .expect("known client");
        let mut api = client.rtc.direct_api();
        let ssrc = api.stream_tx_by_mid(mid, None).expect("send stream").ssrc();
        let stream = api.stream_tx(&ssrc).expect("send stream");
        for (i, payload) in packets.iter().enumerate() {
            stream.write_rtp(
                RtpWrite::new(
                    pt,
                    (first_seq + i as u64).into(),
                    timestamp,
                    now,
                    payload.to_vec(),
                )
                .marker(marker && i + 1 == packets.len())
                .nackable(true),
            );
        }
        client.drain(now, &mut self.in_flight);
        self.settle();
    }

    /// The client asks for a keyframe on the stream it receives on `mid`.
    pub fn request_keyframe(&mut self, id: PeerId, mid: Mid) {
        let now = self.now;
        let client = self.client(id);
        client
            .rtc
            .direct_api()
            .stream_rx_by_mid(mid, None)
            .expect("receive stream")
            .request_keyframe(KeyframeRequestKind::Pli);
        let mut out = VecDeque::new();
        client.drain(now, &mut out);
        self.in_flight.extend(out);
        self.settle();
    }

    /// Sends a raw datagram to the router from `source`.
    pub fn inject(&mut self, source: SocketAddr, contents: &[u8]) {
        self.deliver_to_router(source, contents);
        self.settle();
    }

    fn deliver_to_router(&mut self, source: SocketAddr, contents: &[u8]) {
        let (now, to) = (self.now, self.router_addr);
        let Some(steering) = self.steering.as_mut() else {
            self.router.handle_receive(now, source, to, contents);
            return;
        };
        if let Some(&peer) = steering.get(&source) {
            if self
                .router
                .handle_receive_from(peer, now, source, to, contents)
            {
                return;
            }
            steering.remove(&source);
        }
        if let Some(peer) = self.router.handle_receive(now, source, to, contents) {
            steering.insert(source, peer);
        }
    }
}

/// A small deterministic generator for garbage bytes (xorshift64*).
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Noise(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
