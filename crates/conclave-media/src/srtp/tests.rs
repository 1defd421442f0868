//! The sealer against published test vectors, and against a stock str0m
//! peer: two `Rtc`s over an in-memory link, the router's built by
//! [`build_rtc`] so its keys are exported, the peer's with str0m's own
//! provider. Packets sealed here are fed to the peer, which must deliver
//! them as RTP (or refuse them when tampered with).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, KeyingMaterial,
    ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::*;
use crate::keyexport::{KeySlot, base_provider, build_rtc};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn key_derivation_matches_rfc_3711_appendix_b3() {
    let master = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    let srtp = base_provider().srtp_provider;
    let mut key = [0u8; 16];
    derive(srtp, &master, &salt, LABEL_RTP_ENCRYPTION, &mut key);
    assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut session_salt = [0u8; 14];
    derive(srtp, &master, &salt, LABEL_RTP_SALT, &mut session_salt);
    assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0u8; 20];
    derive(srtp, &master, &salt, LABEL_RTP_AUTH, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

#[test]
fn aes_128_gcm_seal_matches_rfc_7714_section_16_1() {
    let mut key = [0u8; 16];
    key.copy_from_slice(&hex("000102030405060708090a0b0c0d0e0f"));
    let mut salt = [0u8; 14];
    salt[..12].copy_from_slice(&hex("517569642070726f2071756f"));
    let mut sealer = SrtpSealer {
        cipher: Cipher::Gcm128(
            base_provider()
                .srtp_provider
                .aead_aes_128_gcm()
                .create_cipher(key, true),
        ),
        salt,
        streams: FxHashMap::default(),
    };
    let clear = hex(
        "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
         20646976 69736120 696e2070 61727465 73207472 6573",
    );
    let sealed = hex(
        "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
         be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1
         6a9152cf 765ee439 0cce",
    );
    let mut out = [0u8; 1500];
    let n = sealer.seal_rtp(&clear, &mut out).expect("sealed");
    assert_eq!(out[..n].to_vec(), sealed);
}

#[test]
fn rollover_counter_follows_wrap_and_reordering() {
    let mut s = StreamIndex::starting_at(65_534);
    assert_eq!(s.claim(1, 65_534), Ok(65_534));
    assert_eq!(s.claim(1, 0), Ok(65_536));
    // Reordered across the wrap: still the first period.
    assert_eq!(s.claim(1, 65_535), Ok(65_535));
    assert_eq!(s.claim(1, 1), Ok(65_537));
    assert_eq!(s.claim(1, 30_000), Ok(65_536 + 30_000));
    assert_eq!(s.claim(1, 60_000), Ok(65_536 + 60_000));
    // Less than half the sequence space ahead of 60 000: the next period.
    assert_eq!(s.claim(1, 7_000), Ok(2 * 65_536 + 7_000));
    // More than half of it behind 7 000: the period before, and far
    // behind the window.
    assert_eq!(
        s.claim(1, 59_990),
        Err(SealError::TooOld {
            ssrc: 1,
            index: 65_536 + 59_990
        })
    );
}

#[test]
fn an_index_is_never_sealed_twice() {
    let mut s = StreamIndex::starting_at(10);
    assert_eq!(s.claim(7, 10), Ok(10));
    assert_eq!(s.claim(7, 12), Ok(12));
    assert_eq!(
        s.claim(7, 10),
        Err(SealError::IndexReused { ssrc: 7, index: 10 })
    );
    assert_eq!(s.claim(7, 11), Ok(11));
    assert_eq!(
        s.claim(7, 11),
        Err(SealError::IndexReused { ssrc: 7, index: 11 })
    );
    assert_eq!(s.claim(7, 300), Ok(300));
    // 12 is now more than the window behind: it cannot be told apart from
    // an index sealed long ago, so it is refused rather than risked.
    assert_eq!(
        s.claim(7, 12),
        Err(SealError::TooOld { ssrc: 7, index: 12 })
    );
}

#[test]
fn malformed_or_oversized_input_is_refused_without_panic() {
    let mut sealer = pair(None).sealer();
    let mut out = [0u8; 64];
    assert_eq!(sealer.seal_rtp(&[], &mut out), Err(SealError::Malformed));
    assert_eq!(
        sealer.seal_rtp(&[0x80; 11], &mut out),
        Err(SealError::Malformed)
    );
    // Version 1.
    assert_eq!(
        sealer.seal_rtp(&[0x40; 20], &mut out),
        Err(SealError::Malformed)
    );
    // 15 CSRCs announced, none present.
    assert_eq!(
        sealer.seal_rtp(&[0x8f; 20], &mut out),
        Err(SealError::Malformed)
    );
    // An extension header that runs past the end.
    let mut ext = vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 9];
    assert_eq!(sealer.seal_rtp(&ext, &mut out), Err(SealError::Malformed));
    ext.truncate(14);
    assert_eq!(sealer.seal_rtp(&ext, &mut out), Err(SealError::Malformed));
    let big = [0x80u8; 60];
    assert_eq!(
        sealer.seal_rtp(&big, &mut out),
        Err(SealError::BufferTooSmall { need: 76 })
    );
}

#[test]
fn a_stock_str0m_peer_accepts_aes_256_gcm_sealed_here() {
    let mut p = pair(None);
    assert_eq!(p.profile(), SrtpProfile::AEAD_AES_256_GCM);
    let mut sealer = p.sealer();
    let seqs: Vec<u16> = (1..=50).collect();
    assert_eq!(p.deliver(&mut sealer, &seqs, false), seqs);
}

#[test]
fn a_stock_str0m_peer_accepts_aes_128_gcm_sealed_here() {
    let mut p = pair(Some(SrtpProfile::AEAD_AES_128_GCM));
    let mut sealer = p.sealer();
    let seqs: Vec<u16> = (1..=20).collect();
    assert_eq!(p.deliver(&mut sealer, &seqs, false), seqs);
}

#[test]
fn a_stock_str0m_peer_accepts_aes_cm_hmac_sha1_80_sealed_here() {
    let mut p = pair(Some(SrtpProfile::AES128_CM_SHA1_80));
    let mut sealer = p.sealer();
    let seqs: Vec<u16> = (1..=20).collect();
    assert_eq!(p.deliver(&mut sealer, &seqs, false), seqs);
}

#[test]
fn a_stock_str0m_peer_follows_the_rollover_counter_across_the_wrap() {
    for force in [None, Some(SrtpProfile::AES128_CM_SHA1_80)] {
        let mut p = pair(force);
        let mut sealer = p.sealer();
        let seqs: Vec<u16> = (65_500..=65_535).chain(0..40).collect();
        assert_eq!(p.deliver(&mut sealer, &seqs, false), seqs, "{force:?}");
        assert_eq!(sealer.highest_index(p.ssrc).map(|i| i >> 16), Some(1));
    }
}

#[test]
fn a_stock_str0m_peer_refuses_a_tampered_packet() {
    for force in [None, Some(SrtpProfile::AES128_CM_SHA1_80)] {
        let mut p = pair(force);
        let mut sealer = p.sealer();
        assert_eq!(p.deliver(&mut sealer, &[1, 2, 3], true), Vec::<u16>::new());
        // The session is intact: the next packets, untouched, arrive.
        assert_eq!(p.deliver(&mut sealer, &[4, 5], false), vec![4, 5]);
    }
}

/// A resend sealed again from the clear packet is the first ciphertext,
/// byte for byte, in every profile and across the rollover; an index the
/// sealer has not sealed (ahead of it, or reserved and not sealed in its
/// window) is refused, so resealing can never take a fresh nonce.
#[test]
fn resealing_gives_the_same_bytes_and_never_a_fresh_index() {
    for force in [
        None,
        Some(SrtpProfile::AEAD_AES_128_GCM),
        Some(SrtpProfile::AES128_CM_SHA1_80),
    ] {
        let mut p = pair(force);
        let mut sealer = p.sealer();
        let payload: Vec<u8> = (0..900u32).map(|i| (i * 7) as u8).collect();
        let (mut clear, mut first, mut again) = (Vec::new(), vec![0u8; 1_500], vec![0u8; 1_500]);
        let mut kept = Vec::new();
        for index in (65_530u64..65_546).chain([65_700]) {
            p.rtp(index as u16, &payload, &mut clear);
            // The fast path seals its header and the payload where each lies.
            let (header, body) = clear.split_at(clear.len() - payload.len());
            let n = sealer
                .seal_parts_at(header, body, index, &mut first)
                .expect("sealed");
            kept.push((index, header.to_vec(), first[..n].to_vec()));
        }
        // The first 16 are older than the window by now, as the fast path's
        // history holds them.
        for (index, header, sealed) in &kept {
            let n = sealer
                .reseal_parts_at(header, &payload, *index, &mut again)
                .expect("resealed");
            assert_eq!(&again[..n], &sealed[..], "{force:?} {index}");
        }
        // A stock peer takes a resend (its first copy never reached it
        // here); the first kept, so the peer's rollover counter starts at 0.
        let (index, header, _) = &kept[0];
        let n = sealer
            .reseal_parts_at(header, &payload, *index, &mut again)
            .expect("resealed");
        assert_eq!(p.receive_sealed(&again[..n], &payload), Some(*index as u16));
        let resealed = |s: &mut SrtpSealer, clear: &[u8], index: u64, out: &mut [u8]| {
            let (header, body) = clear.split_at(clear.len() - payload.len());
            s.reseal_parts_at(header, body, index, out)
        };
        let never = |index: u64| {
            Err(SealError::NeverSealed {
                ssrc: p.ssrc,
                index,
            })
        };
        p.rtp(65_701u64 as u16, &payload, &mut clear);
        assert_eq!(
            resealed(&mut sealer, &clear, 65_701, &mut again),
            never(65_701)
        );
        // In the window and never sealed.
        p.rtp(65_650u64 as u16, &payload, &mut clear);
        assert_eq!(
            resealed(&mut sealer, &clear, 65_650, &mut again),
            never(65_650)
        );
        // Still sealable once, then resealable.
        assert!(sealer.seal_rtp_at(&clear, 65_650, &mut first).is_ok());
        assert!(resealed(&mut sealer, &clear, 65_650, &mut again).is_ok());
        // A stream never sealed on.
        let mut other = clear.clone();
        other[8..12].copy_from_slice(&p.ssrc.wrapping_add(1).to_be_bytes());
        assert_eq!(
            resealed(&mut sealer, &other, 65_650, &mut again),
            Err(SealError::NeverSealed {
                ssrc: p.ssrc.wrapping_add(1),
                index: 65_650
            })
        );
    }
}

// ---------------------------------------------------------------------------
// Two sessions over an in-memory link.

const ROUTER: &str = "10.0.0.1:5000";
const PEER: &str = "10.0.0.2:6000";

struct Pair {
    slot: KeySlot,
    peer: Rtc,
    now: Instant,
    mid: Mid,
    ssrc: u32,
    pt: u8,
    mid_ext: Option<u8>,
    /// The profile the peer was told to key with, if not the negotiated one.
    force: Option<SrtpProfile>,
}

impl Pair {
    fn profile(&self) -> SrtpProfile {
        self.slot.get().expect("keys exported").profile
    }

    /// A sealer keyed as the peer keyed its receiving side.
    fn sealer(&self) -> SrtpSealer {
        let keys = self.slot.get().expect("keys exported");
        let (profile, material) = match self.force {
            Some(p) => (p, &keys.material[..material_len(p)]),
            None => (keys.profile, &keys.material[..]),
        };
        SrtpSealer::new(base_provider(), profile, material, keys.active).expect("sealer")
    }

    /// Seals a packet per sequence number (flipping a payload bit after
    /// sealing if `tamper`), feeds them to the peer and returns the
    /// sequence numbers of the packets it delivered with intact payloads.
    fn deliver(&mut self, sealer: &mut SrtpSealer, seqs: &[u16], tamper: bool) -> Vec<u16> {
        let payload: Vec<u8> = (0..1_000u32).map(|i| i as u8).collect();
        let mut clear = Vec::new();
        let mut out = vec![0u8; 1_500];
        let mut got = Vec::new();
        for &seq in seqs {
            self.rtp(seq, &payload, &mut clear);
            let n = sealer.seal_rtp(&clear, &mut out).expect("sealed");
            if tamper {
                out[n - 30] ^= 1;
            }
            let input = Input::Receive(
                self.now,
                Receive {
                    proto: Protocol::Udp,
                    source: ROUTER.parse().unwrap(),
                    destination: PEER.parse().unwrap(),
                    contents: out[..n].try_into().expect("datagram"),
                },
            );
            self.peer.handle_input(input).expect("input");
            while let Ok(o) = self.peer.poll_output() {
                match o {
                    Output::Timeout(_) => break,
                    Output::Event(Event::RtpPacket(p))
                        if *p.header.ssrc == self.ssrc && *p.payload == payload[..] =>
                    {
                        got.push(p.header.sequence_number)
                    }
                    _ => {}
                }
            }
        }
        got
    }

    /// Feeds one sealed datagram to the peer: the sequence number of the
    /// packet it delivers, if it delivers one with `payload`.
    fn receive_sealed(&mut self, sealed: &[u8], payload: &[u8]) -> Option<u16> {
        let input = Input::Receive(
            self.now,
            Receive {
                proto: Protocol::Udp,
                source: ROUTER.parse().unwrap(),
                destination: PEER.parse().unwrap(),
                contents: sealed.try_into().expect("datagram"),
            },
        );
        self.peer.handle_input(input).expect("input");
        let mut got = None;
        while let Ok(o) = self.peer.poll_output() {
            match o {
                Output::Timeout(_) => break,
                Output::Event(Event::RtpPacket(p))
                    if *p.header.ssrc == self.ssrc && *p.payload == *payload =>
                {
                    got = Some(p.header.sequence_number)
                }
                _ => {}
            }
        }
        got
    }

    /// A clear RTP packet on the router's send stream, with the MID
    /// extension as str0m writes it before the peer has bound the SSRC.
    fn rtp(&self, seq: u16, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&[0x80, self.pt & 0x7f]);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(u32::from(seq) * 3_000).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        if let Some(id) = self.mid_ext {
            let mid = self.mid.to_string();
            let body = 1 + mid.len();
            let words = body.div_ceil(4);
            out[0] |= 0x10;
            out.extend_from_slice(&[0xbe, 0xde]);
            out.extend_from_slice(&(words as u16).to_be_bytes());
            out.push((id << 4) | (mid.len() as u8 - 1));
            out.extend_from_slice(mid.as_bytes());
            out.resize(out.len() + words * 4 - body, 0);
        }
        out.extend_from_slice(payload);
    }
}

fn material_len(p: SrtpProfile) -> usize {
    match p {
        SrtpProfile::AES128_CM_SHA1_80 => 2 * (16 + 14),
        SrtpProfile::AEAD_AES_128_GCM => 2 * (16 + 12),
        _ => 2 * (32 + 12),
    }
}

/// A router session (keys exported) and a stock peer, connected, the router
/// offering one video stream to the peer. With `force`, the peer keys its
/// SRTP with that profile from the first bytes of the same material: str0m
/// negotiates AES-256-GCM between two str0m sessions, and this is how the
/// other profiles are checked against str0m's own unsealing.
fn pair(force: Option<SrtpProfile>) -> Pair {
    // A test's clock starts anywhere; the sessions only compare instants.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let (mut router, slot) = build_rtc(Rtc::builder().set_ice_lite(true).set_rtp_mode(true), t0);
    let mut peer_config = Rtc::builder().set_rtp_mode(true);
    if let Some(p) = force {
        peer_config = peer_config.set_crypto_provider(Arc::new(CryptoProvider {
            dtls_provider: forcing(p),
            ..base_provider().clone()
        }));
    }
    let mut peer = peer_config.build(t0);
    router.add_local_candidate(Candidate::host(ROUTER.parse().unwrap(), "udp").unwrap());
    peer.add_local_candidate(Candidate::host(PEER.parse().unwrap(), "udp").unwrap());
    let mut change = router.sdp_api();
    let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().expect("offer");
    let answer = peer.sdp_api().accept_offer(offer).expect("answer");
    router
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accepted");
    let now = connect(&mut router, &mut peer, t0);
    let media = router.media(mid).expect("media");
    let pts = media.remote_pts().to_vec();
    let mid_ext = media.remote_extmap().id_of(Extension::RtpMid);
    let pt = *router
        .codec_config()
        .find(|p| pts.contains(&p.pt()) && p.spec().codec == Codec::Vp8)
        .expect("vp8")
        .pt();
    let ssrc = *router
        .direct_api()
        .stream_tx_by_mid(mid, None)
        .expect("send stream")
        .ssrc();
    Pair {
        slot,
        peer,
        now,
        mid,
        ssrc,
        pt,
        mid_ext,
        force,
    }
}

/// Runs both sessions in lock step until both are connected.
fn connect(a: &mut Rtc, b: &mut Rtc, mut now: Instant) -> Instant {
    let mut to_a: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
    let mut to_b = Vec::new();
    for _ in 0..2_000 {
        flush(a, &mut to_b);
        flush(b, &mut to_a);
        while !to_a.is_empty() || !to_b.is_empty() {
            for (src, dst, data) in std::mem::take(&mut to_a) {
                receive(a, now, src, dst, &data);
                flush(a, &mut to_b);
            }
            for (src, dst, data) in std::mem::take(&mut to_b) {
                receive(b, now, src, dst, &data);
                flush(b, &mut to_a);
            }
        }
        if a.is_connected() && b.is_connected() {
            return now;
        }
        now += Duration::from_millis(5);
        a.handle_input(Input::Timeout(now)).expect("timeout");
        b.handle_input(Input::Timeout(now)).expect("timeout");
    }
    panic!("the sessions did not connect");
}

fn receive(rtc: &mut Rtc, now: Instant, src: SocketAddr, dst: SocketAddr, data: &[u8]) {
    let contents = data.try_into().expect("datagram");
    let input = Input::Receive(
        now,
        Receive {
            proto: Protocol::Udp,
            source: src,
            destination: dst,
            contents,
        },
    );
    rtc.handle_input(input).expect("input");
}

fn flush(rtc: &mut Rtc, to: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>) {
    while let Ok(o) = rtc.poll_output() {
        match o {
            Output::Timeout(_) => break,
            Output::Transmit(t) => to.push((t.source, t.destination, t.contents.into())),
            Output::Event(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------
// A DTLS provider for the peer that keys its SRTP with a chosen profile.

#[derive(Debug)]
struct Forcing(SrtpProfile);

static FORCE_CM: Forcing = Forcing(SrtpProfile::AES128_CM_SHA1_80);
static FORCE_GCM_128: Forcing = Forcing(SrtpProfile::AEAD_AES_128_GCM);
static FORCE_GCM_256: Forcing = Forcing(SrtpProfile::AEAD_AES_256_GCM);

fn forcing(p: SrtpProfile) -> &'static Forcing {
    match p {
        SrtpProfile::AES128_CM_SHA1_80 => &FORCE_CM,
        SrtpProfile::AEAD_AES_128_GCM => &FORCE_GCM_128,
        _ => &FORCE_GCM_256,
    }
}

impl DtlsProvider for Forcing {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        base_provider().dtls_provider.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = base_provider()
            .dtls_provider
            .new_dtls(cert, now, version, mtu)?;
        Ok(Box::new(ForcingDtls {
            inner,
            profile: self.0,
        }))
    }
}

#[derive(Debug)]
struct ForcingDtls {
    inner: Box<dyn DtlsInstance>,
    profile: SrtpProfile,
}

impl DtlsInstance for ForcingDtls {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        match self.inner.poll_output(buf) {
            DtlsOutput::KeyingMaterial(km, _) => DtlsOutput::KeyingMaterial(
                KeyingMaterial::new(&km[..material_len(self.profile)]),
                self.profile,
            ),
            other => other,
        }
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.inner.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }
    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}
