//! Simulcast layer choice: which of a publisher's layers one subscriber gets.
//!
//! A browser publishing simulcast sends the same video as (usually) three
//! encodings, each its own RTP stream named by a rid (RFC 8851/8853): in
//! Conclave's web client "q", "h" and "f", a quarter, half and full size. The
//! router forwards exactly one of them to each subscriber, chosen here from
//! two limits:
//!
//! - the view: the size the subscriber shows that video at (`view_size` in
//!   signaling). The layer chosen is the smallest that covers the view in
//!   either dimension, so the picture is never upscaled when a better layer
//!   exists and no bits are spent on pixels nobody sees; when no layer covers
//!   it, the largest. A view of zero (a hidden tile) gets the smallest layer.
//!   Before the subscriber says anything: the middle layer
//!   ([`default_layer`]), a grid tile's worth at a quarter of the full
//!   layer's bits.
//! - the budget: the share of the subscriber's bandwidth estimate (TWCC, see
//!   the router) available to this video. The layer's measured incoming
//!   bitrate must fit; a layer above the one being sent must fit with
//!   [`UP_HEADROOM`] to spare, so a budget that hovers at a layer's bitrate
//!   does not flip between two layers. When nothing fits, the smallest layer:
//!   a poor picture beats none.
//!
//! Only layers that are arriving count ([`BitrateMeter::is_active`]): a
//! browser drops its top layers when its own uplink or CPU is short.
//!
//! Layer sizes come from the layers' key frames ([`crate::vp8`]); one not
//! seen yet is estimated from a known neighbour (each layer twice the size of
//! the one below, as browsers scale). Pure: no I/O, time passed in.

use std::time::{Duration, Instant};

/// A layer above the current one must fit the budget with this factor to
/// spare (5/4: 25 %).
pub const UP_HEADROOM: (u64, u64) = (5, 4);

/// A layer with no packet for this long is not arriving (the publisher paused
/// it); browsers send every active layer at several packets a second.
pub const LAYER_IDLE: Duration = Duration::from_millis(1_500);

/// Bitrate is measured over windows of this length.
const METER_WINDOW: Duration = Duration::from_millis(500);

/// The incoming bitrate of one layer, smoothed over a few windows.
#[derive(Debug, Clone, Default)]
pub struct BitrateMeter {
    window_start: Option<Instant>,
    window_bytes: u64,
    bitrate: Option<u64>,
    last_packet: Option<Instant>,
}

impl BitrateMeter {
    /// A packet of `bytes` (RTP payload) arrived at `now`.
    pub fn on_packet(&mut self, now: Instant, bytes: usize) {
        self.last_packet = Some(now);
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= METER_WINDOW {
            let measured = self.window_bytes * 8 * 1_000_000 / (elapsed.as_micros().max(1) as u64);
            // Half old, half new: one key frame does not make a layer
            // look twice as expensive, a real change shows within a second.
            self.bitrate = Some(match self.bitrate {
                Some(old) => (old + measured) / 2,
                None => measured,
            });
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
        self.window_bytes += bytes as u64;
    }

    /// Bits per second; `None` until one window has passed.
    pub fn bitrate(&self) -> Option<u64> {
        self.bitrate
    }

    /// Whether packets are arriving.
    pub fn is_active(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)
    }
}

/// What the choice needs to know about one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layer {
    /// Width and height from its last key frame.
    pub size: Option<(u32, u32)>,
    /// Measured incoming bitrate, bits per second.
    pub bitrate: Option<u64>,
    /// Packets are arriving.
    pub active: bool,
}

/// The layer for a subscriber that has not said its view size: the middle
/// one (of three, "h").
pub fn default_layer(count: usize) -> usize {
    count / 2
}

/// The layer (index into `layers`, smallest first) a subscriber should get:
/// `view` is the size it shows the video at (`None`: not said yet), `budget`
/// its bandwidth for this video in bits per second (`None`: no estimate),
/// `current` the layer it gets now. `None` when no layer is arriving.
pub fn choose(
    layers: &[Layer],
    view: Option<(u32, u32)>,
    budget: Option<u64>,
    current: Option<usize>,
) -> Option<usize> {
    let active: Vec<usize> = (0..layers.len()).filter(|&i| layers[i].active).collect();
    let (&lowest, &highest) = (active.first()?, active.last()?);
    let by_view = match view {
        None => {
            // The middle of the layers the publisher declared, or the
            // nearest one arriving below it.
            let want = default_layer(layers.len());
            active
                .iter()
                .rev()
                .copied()
                .find(|&i| i <= want)
                .unwrap_or(lowest)
        }
        Some((w, h)) if w == 0 || h == 0 => lowest,
        Some((w, h)) => active
            .iter()
            .copied()
            .find(|&i| estimated_size(layers, i).is_some_and(|(lw, lh)| lw >= w || lh >= h))
            .unwrap_or(highest),
    };
    let Some(budget) = budget else {
        return Some(by_view);
    };
    let fits = |i: usize| {
        let Some(rate) = layers[i].bitrate else {
            // Not measured yet: nothing says it does not fit.
            return true;
        };
        let above = current.is_none_or(|c| i > c);
        if above {
            rate.saturating_mul(UP_HEADROOM.0) / UP_HEADROOM.1 <= budget
        } else {
            rate <= budget
        }
    };
    Some(
        active
            .iter()
            .rev()
            .copied()
            .filter(|&i| i <= by_view)
            .find(|&i| fits(i))
            .unwrap_or(lowest),
    )
}

/// Layer `i`'s size, or an estimate from the nearest layer of known size
/// (a factor of two per layer).
fn estimated_size(layers: &[Layer], i: usize) -> Option<(u32, u32)> {
    if let Some(size) = layers.get(i)?.size {
        return Some(size);
    }
    let (j, (w, h)) = layers
        .iter()
        .enumerate()
        .filter_map(|(j, l)| l.size.map(|s| (j, s)))
        .min_by_key(|(j, _)| j.abs_diff(i))?;
    let shift = j.abs_diff(i).min(16) as u32;
    Some(if i > j {
        (w.saturating_mul(1 << shift), h.saturating_mul(1 << shift))
    } else {
        (w >> shift, h >> shift)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Instant {
        // A real instant only as the origin of the virtual clock.
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    /// Three arriving layers of 320×180, 640×360, 1280×720 at 150, 500 and
    /// 1 500 kbit/s.
    fn three() -> Vec<Layer> {
        [
            (320, 180, 150_000),
            (640, 360, 500_000),
            (1280, 720, 1_500_000),
        ]
        .into_iter()
        .map(|(w, h, b)| Layer {
            size: Some((w, h)),
            bitrate: Some(b),
            active: true,
        })
        .collect()
    }

    #[test]
    fn the_view_picks_the_smallest_layer_that_covers_it() {
        let l = three();
        assert_eq!(choose(&l, Some((160, 90)), None, None), Some(0));
        assert_eq!(choose(&l, Some((320, 180)), None, None), Some(0));
        assert_eq!(choose(&l, Some((400, 200)), None, None), Some(1));
        // Covering one dimension is enough: a wide, short tile shows the
        // video letterboxed at its height.
        assert_eq!(choose(&l, Some((1000, 150)), None, None), Some(0));
        assert_eq!(choose(&l, Some((640, 480)), None, None), Some(1));
        assert_eq!(choose(&l, Some((1000, 560)), None, None), Some(2));
        assert_eq!(choose(&l, Some((3840, 2160)), None, None), Some(2));
        // Hidden: the smallest. Not said yet: the middle.
        assert_eq!(choose(&l, Some((0, 0)), None, None), Some(0));
        assert_eq!(choose(&l, None, None, None), Some(1));
    }

    #[test]
    fn the_budget_caps_the_layer_with_headroom_to_go_up() {
        let l = three();
        let big = Some((1920, 1080));
        assert_eq!(choose(&l, big, Some(10_000_000), Some(0)), Some(2));
        assert_eq!(choose(&l, big, Some(1_000_000), Some(2)), Some(1));
        assert_eq!(choose(&l, big, Some(100_000), Some(1)), Some(0));
        // 1.6 Mbit/s keeps the full layer but does not reach it from below.
        assert_eq!(choose(&l, big, Some(1_600_000), Some(2)), Some(2));
        assert_eq!(choose(&l, big, Some(1_600_000), Some(1)), Some(1));
        assert_eq!(choose(&l, big, Some(1_900_000), Some(1)), Some(2));
        // The view still caps a large budget.
        assert_eq!(
            choose(&l, Some((300, 150)), Some(10_000_000), Some(2)),
            Some(0)
        );
    }

    #[test]
    fn only_arriving_layers_are_chosen() {
        let mut l = three();
        l[2].active = false;
        assert_eq!(choose(&l, Some((1920, 1080)), None, None), Some(1));
        l[0].active = false;
        l[1].active = false;
        assert_eq!(choose(&l, Some((1920, 1080)), None, None), None);
        let mut l = three();
        l[1].active = false;
        // The default (middle) is not arriving: the one below it.
        assert_eq!(choose(&l, None, None, None), Some(0));
    }

    #[test]
    fn unknown_sizes_are_estimated_from_a_known_layer() {
        let mut l = three();
        l[0].size = None;
        l[1].size = None;
        // 1280×720 known: the others are taken as 640×360 and 320×180.
        assert_eq!(choose(&l, Some((300, 170)), None, None), Some(0));
        assert_eq!(choose(&l, Some((600, 300)), None, None), Some(1));
        let l: Vec<Layer> = (0..3)
            .map(|_| Layer {
                active: true,
                ..Layer::default()
            })
            .collect();
        // Nothing known: no layer is known to cover it, so the largest.
        assert_eq!(choose(&l, Some((100, 100)), None, None), Some(2));
    }

    #[test]
    fn meter_measures_bits_per_second_and_goes_idle() {
        let t0 = origin();
        let mut m = BitrateMeter::default();
        // 50 packets a second of 1 000 bytes: 400 kbit/s.
        for i in 0..=50 {
            m.on_packet(t0 + Duration::from_millis(20 * i), 1_000);
        }
        let rate = m.bitrate().unwrap();
        assert!((380_000..=420_000).contains(&rate), "{rate}");
        assert!(m.is_active(t0 + Duration::from_millis(1_500)));
        assert!(!m.is_active(t0 + Duration::from_millis(2_600)));
        assert!(!BitrateMeter::default().is_active(t0));
    }
}
