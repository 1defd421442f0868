//! Identifiers a person may have to type: meeting IDs and passcodes.
//!
//! Both use Crockford's base32 alphabet (no I, L, O or U), lower-cased, so that a
//! spoken or hand-copied ID survives: on input `o` reads as `0` and `i`/`l` as `1`,
//! case and separators are ignored. Meeting IDs carry 80 random bits (sixteen
//! symbols, shown in groups of four); passcodes carry 50 (ten symbols). An invite
//! link therefore holds 130 unguessable bits.

use std::fmt;
use std::str::FromStr;

use data_encoding::{Encoding, Specification};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Symbols of a meeting ID (5 bits each): 16 × 5 = 80 random bits.
const MEETING_ID_SYMBOLS: usize = 16;
/// Symbols of a generated passcode: 10 × 5 = 50 random bits.
pub const PASSCODE_SYMBOLS: usize = 10;
/// Longest passcode a host may choose. Keeps argon2 inputs and messages small.
pub const PASSCODE_MAX_LEN: usize = 64;
/// Shortest passcode a host may choose. Below this, rate limits alone guard the meeting.
pub const PASSCODE_MIN_LEN: usize = 8;

fn crockford() -> Encoding {
    let mut spec = Specification::new();
    spec.symbols.push_str("0123456789abcdefghjkmnpqrstvwxyz");
    spec.translate.from.push_str("ABCDEFGHJKMNPQRSTVWXYZoOiIlL");
    spec.translate.to.push_str("abcdefghjkmnpqrstvwxyz001111");
    spec.check_trailing_bits = false;
    // The specification is a constant; `encoding()` fails only on an invalid one,
    // which the unit tests below would catch.
    spec.encoding()
        .expect("valid Crockford base32 specification")
}

/// Why a typed identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("a meeting ID has {MEETING_ID_SYMBOLS} letters and digits")]
    Length,
    #[error("a meeting ID uses only the letters and digits of Crockford base32")]
    Symbol,
}

/// A meeting's public identifier: 80 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeetingId([u8; 10]);

impl MeetingId {
    /// A fresh ID from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 10];
        rand::rng().fill_bytes(&mut bytes);
        MeetingId(bytes)
    }

    /// The ID's 80 bits, as the media link between nodes carries them.
    pub fn to_bytes(&self) -> [u8; 10] {
        self.0
    }

    /// An ID from its bits (`None` unless there are exactly 10 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(MeetingId)
    }

    /// The sixteen symbols without separators, as stored.
    pub fn compact(&self) -> String {
        crockford().encode(&self.0)
    }
}

impl fmt::Display for MeetingId {
    /// Grouped for reading aloud: `abcd-efgh-jkmn-pqrs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.compact();
        for (i, chunk) in s.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            // Crockford symbols are ASCII.
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for MeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeetingId({self})")
    }
}

impl FromStr for MeetingId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let cleaned: String = s
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '_'))
            .collect();
        if cleaned.len() != MEETING_ID_SYMBOLS {
            return Err(IdError::Length);
        }
        let bytes = crockford()
            .decode(cleaned.as_bytes())
            .map_err(|_| IdError::Symbol)?;
        let arr: [u8; 10] = bytes.try_into().map_err(|_| IdError::Length)?;
        Ok(MeetingId(arr))
    }
}

impl Serialize for MeetingId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MeetingId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A fresh passcode of [`PASSCODE_SYMBOLS`] unambiguous symbols (50 bits).
pub fn generate_passcode() -> String {
    let mut bytes = [0u8; 7];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = crockford().encode(&bytes);
    s.truncate(PASSCODE_SYMBOLS);
    s
}

/// The form a typed passcode is compared in: Crockford symbols are folded
/// (case, `o`→`0`, `i`/`l`→`1`) and separators dropped, so that what a person
/// reads off a screen still matches. Anything else is kept as typed.
pub fn normalize_passcode(p: &str) -> String {
    p.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c {
            'o' | 'O' => '0',
            'i' | 'I' | 'l' | 'L' => '1',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A 128-bit secret a client presents to take its seat back after a dropped socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ResumeToken(pub [u8; 16]);

impl ResumeToken {
    pub fn generate() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        ResumeToken(b)
    }

    pub fn encode(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&self.0)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let v = data_encoding::BASE64URL_NOPAD.decode(s.as_bytes()).ok()?;
        Some(ResumeToken(v.try_into().ok()?))
    }
}

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meeting_id_round_trips_through_its_grouped_form() {
        for _ in 0..100 {
            let id = MeetingId::generate();
            let shown = id.to_string();
            assert_eq!(shown.len(), 19);
            assert_eq!(shown.matches('-').count(), 3);
            assert_eq!(shown.parse::<MeetingId>().unwrap(), id);
            assert_eq!(id.compact().parse::<MeetingId>().unwrap(), id);
        }
    }

    #[test]
    fn meeting_id_forgives_case_and_look_alike_letters() {
        let id: MeetingId = "0123-4567-89ab-cdef".parse().unwrap();
        assert_eq!("OI23 4567 89AB CDEF".parse::<MeetingId>().unwrap(), id);
        assert_eq!("ol23-4567-89AB-CDEF".parse::<MeetingId>().unwrap(), id);
        assert_eq!("oi23-4567-89ab-cdef".parse::<MeetingId>().unwrap(), id);
    }

    #[test]
    fn meeting_id_rejects_wrong_length_and_symbols() {
        assert_eq!("abc".parse::<MeetingId>(), Err(IdError::Length));
        assert_eq!(
            "uuuu-uuuu-uuuu-uuuu".parse::<MeetingId>(),
            Err(IdError::Symbol)
        );
        assert_eq!(
            "<img src=x onerror=1>".parse::<MeetingId>(),
            Err(IdError::Length)
        );
    }

    #[test]
    fn generated_passcodes_are_ten_unambiguous_symbols() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = generate_passcode();
            assert_eq!(p.len(), PASSCODE_SYMBOLS);
            assert!(
                p.chars()
                    .all(|c| "0123456789abcdefghjkmnpqrstvwxyz".contains(c))
            );
            assert_eq!(normalize_passcode(&p), p);
            seen.insert(p);
        }
        assert_eq!(seen.len(), 200);
    }

    #[test]
    fn passcode_normalization_folds_what_people_mistype() {
        assert_eq!(normalize_passcode("AB0O-1Il L"), "ab001111");
    }

    #[test]
    fn resume_token_round_trips() {
        let t = ResumeToken::generate();
        assert!(ResumeToken::decode(&t.encode()) == Some(t));
        assert!(ResumeToken::decode("short").is_none());
    }
}
