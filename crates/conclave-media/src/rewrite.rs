//! Sequence number and timestamp rewriting for one forwarded stream.
//!
//! A subscriber receives each forwarded track as one outgoing RTP stream under
//! an SSRC the router chose for that subscriber. The packets feeding it can
//! come from different sources over time: a publisher's simulcast layers, or a
//! new SSRC after the publisher restarted its encoder. The subscriber's jitter
//! buffer and decoder must nevertheless see one stream: sequence numbers that
//! go up by one, timestamps that keep moving forward at the media clock rate.
//! Otherwise a receiver reads a source change as massive loss (and NACKs it) or
//! as time running backwards (and stalls playout).
//!
//! [`Rewriter`] keeps one offset pair per active source. While the source stays
//! the same, every packet is shifted by the same offsets, so reordering and
//! gaps are passed through unchanged. When the source changes, new offsets are
//! chosen so that the next packet follows the last one sent: the sequence
//! number is the next one, and the timestamp has advanced by the wall-clock
//! time between the two packets (at least one tick).
//!
//! Packets the router chooses not to forward (silent audio, a source outside
//! the subscriber's last-N, `lastn.rs`) must not leave a hole either: the
//! receiver would NACK every skipped number, and nobody can resend what was
//! never meant to be sent. After [`Rewriter::skip`], the next packet of the
//! same source continues right after the last one sent, while its
//! timestamp keeps the source's own: the receiver sees what it sees after an
//! Opus DTX pause (consecutive numbers, time moved on) and plays through it.
//!
//! The module is pure: no I/O, no clock; arrival times come with the packets.

use std::time::Instant;

/// Largest timestamp step taken across a source change. RTP timestamps are
/// compared in 32-bit serial arithmetic, so a step must stay below 2^31 to read
/// as "later" at the receiver.
const MAX_TIMESTAMP_STEP: u64 = (1 << 31) - 1;

/// What the rewriter needs to know about one incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePacket {
    /// The stream the packet came from (the publisher's SSRC). A change of
    /// source starts a new mapping.
    pub source: u32,
    /// Extended sequence number (no 16-bit rollover), as str0m reports it.
    pub seq: u64,
    /// The RTP timestamp from the packet header.
    pub timestamp: u32,
    /// When the packet arrived; measures the gap across a source change.
    pub arrival: Instant,
}

/// Where a packet goes in the outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Extended outgoing sequence number. The first one is below 2^16, so the
    /// SRTP rollover counter starts at zero as the receiver expects without any
    /// out-of-band signalling.
    pub seq: u64,
    /// Outgoing RTP timestamp.
    pub timestamp: u32,
    /// The first packet after skipped ones: for audio, the start of a
    /// talkspurt (RFC 3551 §4.1 sets the marker bit there).
    pub resumed: bool,
}

/// The sequence/timestamp mapping of one outgoing stream.
#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    mapping: Option<Mapping>,
}

#[derive(Debug, Clone)]
struct Mapping {
    source: u32,
    /// Outgoing = incoming + offset, wrapping.
    seq_offset: u64,
    ts_offset: u32,
    /// Packets of this source older than the one that started the mapping are
    /// dropped: their outgoing numbers would collide with packets already sent.
    first_seq: u64,
    /// The newest packet sent so far: where the next source continues from.
    last_seq: u64,
    last_timestamp: u32,
    last_arrival: Instant,
    /// Packets of this source were skipped since the last one sent: the
    /// next newer packet closes the gap in sequence numbers.
    skipped: bool,
}

impl Rewriter {
    /// A rewriter for a stream whose RTP clock runs at `clock_rate` Hz
    /// (90 000 for video, 48 000 for Opus).
    pub fn new(clock_rate: u32) -> Self {
        Rewriter {
            clock_rate: clock_rate.max(1),
            mapping: None,
        }
    }

    /// The source currently mapped, if any packet was forwarded yet.
    #[cfg(test)]
    pub fn source(&self) -> Option<u32> {
        self.mapping.as_ref().map(|m| m.source)
    }

    /// A packet of the current source was left out on purpose: the next
    /// one sent takes the next sequence number.
    pub fn skip(&mut self) {
        if let Some(m) = &mut self.mapping {
            m.skipped = true;
        }
    }

    /// Maps `packet` into the outgoing stream, or `None` when it must be
    /// dropped (it predates the current mapping of its source, or belongs to a
    /// source that was replaced).
    pub fn rewrite(&mut self, packet: SourcePacket) -> Option<Rewritten> {
        let Some(m) = &mut self.mapping else {
            // First packet ever: keep the low 16 bits of the publisher's
            // (random) sequence number and its timestamp, so the stream starts
            // with rollover counter zero.
            let seq = u64::from(packet.seq as u16);
            self.mapping = Some(Mapping {
                source: packet.source,
                seq_offset: seq.wrapping_sub(packet.seq),
                ts_offset: 0,
                first_seq: packet.seq,
                last_seq: seq,
                last_timestamp: packet.timestamp,
                last_arrival: packet.arrival,
                skipped: false,
            });
            return Some(Rewritten {
                seq,
                timestamp: packet.timestamp,
                resumed: false,
            });
        };

        if packet.source != m.source {
            // A new source: continue right after the last packet sent.
            let seq = m.last_seq.wrapping_add(1);
            let elapsed = packet.arrival.saturating_duration_since(m.last_arrival);
            let ticks = elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000;
            let step = u64::try_from(ticks)
                .unwrap_or(MAX_TIMESTAMP_STEP)
                .clamp(1, MAX_TIMESTAMP_STEP) as u32;
            let timestamp = m.last_timestamp.wrapping_add(step);
            *m = Mapping {
                source: packet.source,
                seq_offset: seq.wrapping_sub(packet.seq),
                ts_offset: timestamp.wrapping_sub(packet.timestamp),
                first_seq: packet.seq,
                last_seq: seq,
                last_timestamp: timestamp,
                last_arrival: packet.arrival,
                skipped: false,
            };
            return Some(Rewritten {
                seq,
                timestamp,
                resumed: false,
            });
        }

        if packet.seq < m.first_seq {
            return None;
        }
        let mut seq = packet.seq.wrapping_add(m.seq_offset);
        let timestamp = packet.timestamp.wrapping_add(m.ts_offset);
        let resumed = m.skipped && seq > m.last_seq;
        if resumed {
            // Close the gap the skipped packets left; older packets still
            // arriving keep their numbers (below this one).
            let next = m.last_seq.wrapping_add(1);
            m.seq_offset = next.wrapping_sub(packet.seq);
            m.first_seq = packet.seq;
            m.skipped = false;
            seq = next;
        }
        if seq > m.last_seq {
            m.last_seq = seq;
            m.last_timestamp = timestamp;
            m.last_arrival = packet.arrival;
        }
        Some(Rewritten {
            seq,
            timestamp,
            resumed,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn origin() -> Instant {
        // A real instant only as the origin of the virtual clock.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    fn packet(source: u32, seq: u64, timestamp: u32, arrival: Instant) -> SourcePacket {
        SourcePacket {
            source,
            seq,
            timestamp,
            arrival,
        }
    }

    #[test]
    fn first_packet_starts_with_rollover_counter_zero() {
        let t0 = origin();
        let mut r = Rewriter::new(90_000);
        // A long-running publisher: its extended sequence number is past 2^16.
        let out = r.rewrite(packet(7, 3 * 65_536 + 100, 5_000, t0)).unwrap();
        assert_eq!(out.seq, 100);
        assert_eq!(out.timestamp, 5_000);
        let out = r.rewrite(packet(7, 3 * 65_536 + 101, 8_000, t0)).unwrap();
        assert_eq!(out.seq, 101);
        assert_eq!(out.timestamp, 8_000);
    }

    #[test]
    fn sequence_numbers_stay_continuous_across_16_bit_wrap() {
        let t0 = origin();
        let mut r = Rewriter::new(90_000);
        let outs: Vec<u64> = (65_530..65_545)
            .map(|seq| r.rewrite(packet(1, seq, 0, t0)).unwrap().seq)
            .collect();
        let expected: Vec<u64> = (65_530..65_545).collect();
        assert_eq!(outs, expected);
        // The low 16 bits on the wire wrap from 65535 to 0.
        assert_eq!(outs[5] as u16, 65_535);
        assert_eq!(outs[6] as u16, 0);
    }

    #[test]
    fn timestamps_wrap_at_32_bits_without_a_jump() {
        let t0 = origin();
        let mut r = Rewriter::new(90_000);
        let start = u32::MAX - 3_000 + 1;
        let a = r.rewrite(packet(1, 10, start, t0)).unwrap();
        let b = r
            .rewrite(packet(1, 11, start.wrapping_add(3_000), t0))
            .unwrap();
        let c = r
            .rewrite(packet(1, 12, start.wrapping_add(6_000), t0))
            .unwrap();
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 3_000);
        assert_eq!(c.timestamp.wrapping_sub(b.timestamp), 3_000);
        assert_eq!(b.timestamp, 0);
    }

    #[test]
    fn source_switch_continues_sequence_and_advances_time() {
        let t0 = origin();
        let mut r = Rewriter::new(90_000);
        for i in 0..10u64 {
            let at = t0 + Duration::from_millis(33 * i);
            r.rewrite(packet(1, 1_000 + i, 50_000 + 3_000 * i as u32, at))
                .unwrap();
        }
        // Last sent: seq 1009, timestamp 77_000, at 297 ms.
        // The new source has unrelated numbers and shows up 33 ms later.
        let at = t0 + Duration::from_millis(330);
        let out = r.rewrite(packet(2, 40_000, 9_999_999, at)).unwrap();
        assert_eq!(out.seq, 1_010);
        assert_eq!(out.timestamp, 77_000 + 33 * 90);
        let next = r
            .rewrite(packet(
                2,
                40_001,
                9_999_999 + 3_000,
                at + Duration::from_millis(33),
            ))
            .unwrap();
        assert_eq!(next.seq, 1_011);
        assert_eq!(next.timestamp, 77_000 + 33 * 90 + 3_000);
        assert_eq!(r.source(), Some(2));
    }

    #[test]
    fn switch_at_the_same_instant_still_moves_time_forward() {
        let t0 = origin();
        let mut r = Rewriter::new(48_000);
        let a = r.rewrite(packet(1, 5, 100, t0)).unwrap();
        let b = r.rewrite(packet(2, 60_000, 7, t0)).unwrap();
        assert_eq!(b.seq, a.seq + 1);
        assert_eq!(b.timestamp, a.timestamp + 1);
    }

    #[test]
    fn switch_near_the_wrap_points_stays_continuous() {
        let t0 = origin();
        let mut r = Rewriter::new(90_000);
        // The outgoing stream sits right before a 16-bit and a 32-bit wrap.
        r.rewrite(packet(1, 65_535, u32::MAX - 10, t0)).unwrap();
        let out = r
            .rewrite(packet(2, 3, 42, t0 + Duration::from_millis(1)))
            .unwrap();
        assert_eq!(out.seq, 65_536);
        assert_eq!(out.seq as u16, 0);
        assert_eq!(out.timestamp, (u32::MAX - 10).wrapping_add(90));
        let next = r
            .rewrite(packet(2, 4, 42 + 90, t0 + Duration::from_millis(2)))
            .unwrap();
        assert_eq!(next.seq, 65_537);
        assert_eq!(next.timestamp, out.timestamp.wrapping_add(90));
    }

    #[test]
    fn late_packets_of_a_replaced_source_are_dropped() {
        let t0 = origin();
        let mut r = Rewriter::new(90_000);
        r.rewrite(packet(1, 100, 0, t0)).unwrap();
        r.rewrite(packet(1, 101, 3_000, t0)).unwrap();
        let switched = r.rewrite(packet(2, 500, 0, t0)).unwrap();
        // Source 1's reordered packet arrives after the switch: it is gone for
        // good, and a packet of source 2 older than the switch point too.
        // Taking either back would reuse numbers already sent.
        assert_eq!(r.rewrite(packet(2, 499, 0, t0)), None);
        // Source 1 coming back is a new switch, not a late packet.
        let back = r.rewrite(packet(1, 102, 6_000, t0)).unwrap();
        assert_eq!(back.seq, switched.seq + 1);
        assert_eq!(r.rewrite(packet(1, 101, 3_000, t0)), None);
    }

    #[test]
    fn reordering_and_gaps_within_a_source_pass_through() {
        let t0 = origin();
        let mut r = Rewriter::new(90_000);
        let a = r.rewrite(packet(1, 10, 1_000, t0)).unwrap();
        let c = r.rewrite(packet(1, 12, 7_000, t0)).unwrap();
        let b = r.rewrite(packet(1, 11, 4_000, t0)).unwrap();
        let f = r.rewrite(packet(1, 15, 16_000, t0)).unwrap();
        assert_eq!([a.seq, b.seq, c.seq, f.seq], [10, 11, 12, 15]);
        assert_eq!(c.timestamp - b.timestamp, 3_000);
        // A switch continues after the highest sent, not after the late one.
        let g = r.rewrite(packet(9, 1, 0, t0)).unwrap();
        assert_eq!(g.seq, 16);
    }

    #[test]
    fn skipped_packets_leave_no_gap_and_keep_media_time() {
        let t0 = origin();
        let mut r = Rewriter::new(48_000);
        let a = r.rewrite(packet(1, 100, 0, t0)).unwrap();
        // 101..=149 are skipped (silence, or not selected).
        for _ in 101..150 {
            r.skip();
        }
        let b = r.rewrite(packet(1, 150, 50 * 960, t0)).unwrap();
        assert_eq!(b.seq, a.seq + 1);
        assert_eq!(b.timestamp, 50 * 960, "time moved on by the skipped audio");
        assert!(b.resumed && !a.resumed);
        let c = r.rewrite(packet(1, 151, 51 * 960, t0)).unwrap();
        assert_eq!((c.seq, c.resumed), (a.seq + 2, false));
        // A late packet from before the skip is older than the resume
        // point: dropped, never a number already sent.
        assert_eq!(r.rewrite(packet(1, 120, 20 * 960, t0)), None);
        // A skip with nothing sent yet changes nothing.
        let mut fresh = Rewriter::new(48_000);
        fresh.skip();
        let first = fresh.rewrite(packet(3, 7, 0, t0)).unwrap();
        assert_eq!((first.seq, first.resumed), (7, false));
    }

    #[test]
    fn packet_older_than_the_first_is_dropped_not_wrapped() {
        let t0 = origin();
        let mut r = Rewriter::new(90_000);
        let first = r.rewrite(packet(1, 70_000, 0, t0)).unwrap();
        assert_eq!(first.seq, 70_000 - 65_536);
        // Would map below the first outgoing number (a huge rollover counter).
        assert_eq!(r.rewrite(packet(1, 69_999, 0, t0)), None);
    }
}
