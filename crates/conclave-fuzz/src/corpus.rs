//! The committed seed corpus (`fuzz/corpus/<target>/`, shared with `cargo fuzz`) and the
//! deterministic mutations the stable tests add to it, so CI exercises every target on every
//! run without a coverage-guided fuzzer.

use std::path::PathBuf;

/// `fuzz/corpus/<target>` in the repository.
pub fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// The committed seeds of `target`, sorted by file name; empty if there are none.
pub fn committed(target: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// A seed for a target whose first byte picks the entry point: `selector`, then `bytes`.
pub fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut seed = Vec::with_capacity(bytes.len() + 1);
    seed.push(selector);
    seed.extend_from_slice(bytes);
    seed
}

/// A small deterministic generator (xorshift64*), so a failing case reproduces from its seed.
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

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Bytes that mean something to the parsers: JSON punctuation, digits, quotes, escapes,
/// the first bytes of STUN, DTLS and RTP, lengths at their limits.
const INTERESTING: &[u8] = b"{}[]\":,\\ 0123456789-+.eEtfn\n\r\x00\x01\x16\x80\x90\xc8\xfe\xff";

/// One mutation of `input`, possibly spliced with `other`: byte flips, interesting bytes,
/// inserts, deletions, truncation, duplication of a slice, splicing, or random bytes.
pub fn mutate(noise: &mut Noise, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + noise.below(4);
    for _ in 0..rounds {
        let at = noise.below(out.len() + 1);
        match noise.below(8) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << noise.below(8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = INTERESTING[noise.below(INTERESTING.len())];
            }
            2 => out.insert(at, INTERESTING[noise.below(INTERESTING.len())]),
            3 if !out.is_empty() => {
                let end = (at + 1 + noise.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            4 => out.truncate(at),
            5 if !out.is_empty() => {
                let start = noise.below(out.len());
                let end = (start + 1 + noise.below(32)).min(out.len());
                let slice = out[start..end].to_vec();
                out.splice(at..at, slice);
            }
            6 if !other.is_empty() => {
                let from = noise.below(other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                let len = noise.below(8);
                let bytes = noise.bytes(len);
                out.splice(at..at, bytes);
            }
        }
    }
    out
}

/// The seeds, then `count` inputs: mostly mutations of seeds, some plain random bytes.
pub fn inputs(seeds: &[Vec<u8>], count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut noise = Noise::new(seed);
    let mut all: Vec<Vec<u8>> = seeds.to_vec();
    all.extend([vec![], vec![0], vec![0xff; 4], vec![b'{'; 2]]);
    for _ in 0..count {
        if seeds.is_empty() || noise.below(10) == 0 {
            let len = noise.below(300);
            all.push(noise.bytes(len));
            continue;
        }
        let input = &seeds[noise.below(seeds.len())];
        let other = &seeds[noise.below(seeds.len())];
        all.push(mutate(&mut noise, input, other));
    }
    all
}
