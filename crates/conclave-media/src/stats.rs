//! Counters the router keeps, per peer and for the whole router.
//!
//! Everything the router drops is counted somewhere here, so an operator (and a
//! test) can tell garbage on the port from a codec mismatch from a subscriber
//! that asks for keyframes too often. Counters only grow; they wrap never in
//! practice (u64).

/// Counters for one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Datagrams from this peer handed to its WebRTC stack.
    pub datagrams_in: u64,
    pub bytes_in: u64,
    /// Datagrams queued for this peer.
    pub datagrams_out: u64,
    pub bytes_out: u64,
    /// RTP packets this peer published (after SRTP, deduplicated).
    pub rtp_in: u64,
    /// Published packets of a track nobody may receive (not announced or gone).
    pub rtp_unrouted: u64,
    /// Published packets dropped because the meeting does not allow this
    /// kind from this peer now (muted, stopped, suspended).
    pub rtp_gated: u64,
    /// Published packets no subscriber receives: a simulcast layer nobody
    /// gets (or is switching to), or a track with no subscriber yet.
    pub rtp_unreceived: u64,
    /// RTP packets forwarded to this peer as a subscriber.
    pub rtp_forwarded: u64,
    /// Simulcast layer switches on streams this peer receives (each at a
    /// key frame of the new layer).
    pub layer_switches: u64,
    /// Packets meant for this peer that were not forwarded: no common codec,
    /// late packets of a replaced source, outgoing stream gone.
    pub rtp_dropped: u64,
    /// Audio packets not forwarded to this peer because their publisher
    /// is not among the N loudest others it receives (last-N audio).
    pub audio_unselected: u64,
    /// Video packets not forwarded to this peer because it shows that
    /// video nowhere now (a 0×0 view size: an off-page tile).
    pub video_unseen: u64,
    /// Video packets not forwarded to this peer because even that video's
    /// smallest layer did not fit its congested link beside its other
    /// videos (paused for congestion, `video_pause.rs`).
    pub video_paused: u64,
    /// Audio packets this peer published at RFC 6464's silence level
    /// (127), forwarded to nobody.
    pub audio_silence_dropped: u64,
    /// Audio packets this peer published whose level could not be used: a
    /// value outside RFC 6464's range, or none on a track that carried
    /// levels before. The packet is forwarded as its last level decided.
    pub audio_levels_malformed: u64,
    /// RED audio packets this peer received as their primary Opus block
    /// alone, because its session did not negotiate RED.
    pub audio_red_unwrapped: u64,
    /// RED audio packets this peer received as their primary Opus block
    /// alone though it negotiated RED: its link was congested
    /// (`video_pause.rs`).
    pub audio_red_stripped: u64,
    /// PLI/FIR this peer sent about tracks it receives.
    pub keyframe_requests_in: u64,
    /// Fast path (`RouterConfig::fast_path`): video packets sealed and sent
    /// to this peer outside str0m's send queue.
    pub fast_sealed: u64,
    /// Fast path: packets not sealed (an index sealed already, or too old).
    pub fast_seal_errors: u64,
    /// Fast path: RED audio packets on a stream that started without RED
    /// (RED is unwrapped only on str0m's path).
    pub fast_red_dropped: u64,
    /// Fast path: packets sent again for this peer's NACKs.
    pub fast_resent: u64,
    /// Fast path: NACKed packets no longer (or never) in the history
    /// (sequence numbers never sent are counted here).
    pub fast_nack_unanswered: u64,
    /// Fast path: NACKed packets not resent as too late to be played: a
    /// later key frame was sent already.
    pub fast_nack_too_late: u64,
    /// Fast path: NACKed packets not resent, the stream's retransmission
    /// budget being spent.
    pub fast_nack_over_budget: u64,
    /// Fast path: TWCC reports from the subscriber used by its estimator.
    pub fast_twcc_reports: u64,
    /// Fast path: TWCC reports refused (listing nothing sent lately, or
    /// with implausible times): malformed or stale feedback, dropped.
    pub fast_twcc_refused: u64,
    /// Fast path: str0m's RTP packets sealed again with the fast path's
    /// transport-wide sequence number.
    pub fast_resealed: u64,
    /// Fast path: padding packets sent to probe for a step up (`bwe.rs`),
    /// on a video stream's RTX SSRC.
    pub fast_probe_packets: u64,
    /// Fast path: datagrams the subscriber's pacer held back before they
    /// left (a backlog after a stall, spread out; `pacer.rs`).
    pub fast_paced: u64,
    /// Fast path: datagrams dropped because the pacer's queue was full.
    pub fast_pace_dropped: u64,
    /// PLIs the router sent this peer about tracks it publishes.
    pub keyframe_requests_out: u64,
    /// Datagrams or timeouts the WebRTC stack refused with an error.
    pub rtc_errors: u64,
}

/// Counters for the router as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Every datagram handed to [`crate::Router::handle_receive`] or taken by
    /// [`crate::Router::handle_receive_from`].
    pub datagrams_in: u64,
    /// Datagrams that are not STUN, DTLS, RTP or RTCP at all.
    pub garbage: u64,
    /// Well-formed datagrams no peer would take (unknown source, bad ICE
    /// credentials).
    pub unknown_source: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Keyframe requests merged into one sent later (the per-layer throttle,
    /// `keyframe.rs`).
    pub keyframe_requests_deferred: u64,
    /// Changes of active speaker announced ([`crate::Event::ActiveSpeaker`]).
    pub speaker_changes: u64,
    /// Changes of a subscriber's last-N audio selection (a source in for
    /// another, or into a free slot).
    pub audio_selection_changes: u64,
    /// Dynacast decisions sent to publishers ([`crate::Event::LayersWanted`]).
    pub dynacast_changes: u64,
}
