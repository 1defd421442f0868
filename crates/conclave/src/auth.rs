//! Passwords, passcodes and bearer secrets.
//!
//! Passwords and meeting passcodes are hashed with argon2id (the crate's
//! defaults: 19 MiB, 2 passes). Hashing is CPU-bound, so it runs on the
//! blocking pool behind a semaphore: a burst of sign-ins or joins queues up
//! instead of starving the async workers. Its 19 MiB of working memory is
//! allocated here, not by the argon2 crate, so that it goes back to the kernel
//! after each hash ([`argon2_memory`]). Session cookies, API tokens and
//! sign-in links are 256-bit random strings of which only the SHA-256 is stored.
//! A meeting passcode argon2 accepted once is then accepted without it
//! ([`Accepted`]), so a meeting's start does not queue its guests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OnceCell, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task failed")]
    Join,
}

/// A random secret for a cookie, token or link, and its stored digest.
pub struct Secret {
    pub text: String,
    pub digest: Vec<u8>,
}

/// A fresh 256-bit secret with an optional readable prefix (`cnv_` for API tokens).
pub fn new_secret(prefix: &str) -> Secret {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    // Hex keeps tokens free of characters that need quoting in shells and URLs.
    let text = format!("{prefix}{}", hex::encode(b));
    let digest = digest(&text);
    Secret { text, digest }
}

pub fn digest(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Passcode checks running, each a cell its waiters share the answer of.
type Flights = HashMap<[u8; 32], Arc<OnceCell<bool>>>;

/// Runs argon2id off the async workers, at most `permits` at once.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A hash of a random string, checked against when there is nothing real to
    /// check (unknown meeting, unknown user), so that both cost the same time.
    dummy: Arc<String>,
    accepted: Arc<Accepted>,
    /// Passcode checks running now, by [`Accepted::flight_key`]: the same
    /// passcode for the same meeting is checked once, however many wait.
    flights: Arc<Mutex<Flights>>,
    /// argon2 verifications run so far: what a guessing attacker costs the
    /// server, and what the rate limits promise to bound (tests read it).
    checks: Arc<AtomicU64>,
}

impl Hasher {
    pub fn new(permits: usize) -> Result<Self, HashError> {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        let dummy = hash_now(&hex::encode(b))?;
        Ok(Hasher {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            dummy: Arc::new(dummy),
            accepted: Arc::new(Accepted::new()),
            flights: Arc::new(Mutex::new(HashMap::new())),
            checks: Arc::new(AtomicU64::new(0)),
        })
    }

    /// argon2 verifications run since start (passwords and passcodes, real
    /// or against the dummy hash); hashing new secrets is not counted.
    pub fn checks_run(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    pub async fn hash(&self, secret: String) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|_| HashError::Join)?;
        tokio::task::spawn_blocking(move || hash_now(&secret))
            .await
            .map_err(|_| HashError::Join)?
    }

    /// Verifies `secret` against `hash`, or against the dummy hash when there is
    /// none (and then answers false). The time taken does not tell the two apart.
    pub async fn verify(&self, secret: String, hash: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        self.verify_holding_permit(secret, hash).await
    }

    async fn verify_holding_permit(&self, secret: String, hash: Option<String>) -> bool {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.as_ref().clone());
        self.checks.fetch_add(1, Ordering::Relaxed);
        let ok = tokio::task::spawn_blocking(move || verify_now(&secret, &hash))
            .await
            .unwrap_or(false);
        ok && real
    }

    /// [`Hasher::verify`] for a meeting passcode, with the attempt counted
    /// first: `reserve` is called before argon2 runs, and its refusal is the
    /// answer ([`PasscodeVerdict::Limited`]). `scope` names the meeting as the
    /// caller has it (its ID, or nothing for a malformed one).
    ///
    /// A passcode argon2 has accepted for this stored hash before is accepted
    /// again without a check or a reservation. Callers checking the same
    /// passcode for the same meeting at the same moment share one check and
    /// one reservation, so a meeting's start (everyone arriving with the same
    /// passcode, often from one office's address) costs one argon2 check and
    /// never meets the limit on checks in flight. Distinct guesses share
    /// nothing: each takes its own reservation and its own full check. An
    /// unknown meeting (no hash) goes through the same steps as a known one.
    pub async fn verify_passcode<R, E, F>(
        &self,
        scope: &str,
        passcode: String,
        hash: Option<String>,
        reserve: impl FnOnce() -> F,
    ) -> PasscodeVerdict<R, E>
    where
        // Async: in cluster mode the reservation is also taken in Redis.
        F: std::future::Future<Output = Result<R, E>>,
    {
        let accepted = Arc::clone(&self.accepted);
        let known =
            move |h: &Option<String>, p: &str| h.as_ref().is_some_and(|h| accepted.contains(h, p));
        if known(&hash, &passcode) {
            return PasscodeVerdict::Right(None);
        }
        let key = self.accepted.flight_key(scope, hash.as_deref(), &passcode);
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(flights.entry(key).or_default())
        };
        let mut reservation = None;
        let held = &mut reservation;
        let outcome = flight
            .get_or_try_init(move || async move {
                *held = Some(reserve().await?);
                let Ok(_permit) = self.permits.acquire().await else {
                    return Ok(false);
                };
                // A check that finished since the first look proved it.
                if known(&hash, &passcode) {
                    return Ok(true);
                }
                let ok = self
                    .verify_holding_permit(passcode.clone(), hash.clone())
                    .await;
                if ok && let Some(hash) = hash {
                    self.accepted.insert(hash, &passcode);
                }
                Ok(ok)
            })
            .await
            .copied();
        {
            // The last one out of a flight takes it off the list; one that
            // ended with an answer goes at once (the next look is at `accepted`).
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights.get(&key).is_some_and(|f| {
                Arc::ptr_eq(f, &flight) && (f.initialized() || Arc::strong_count(f) <= 2)
            }) {
                flights.remove(&key);
            }
        }
        match outcome {
            Ok(true) => PasscodeVerdict::Right(reservation),
            Ok(false) => PasscodeVerdict::Wrong(reservation),
            Err(e) => PasscodeVerdict::Limited(e),
        }
    }
}

/// What a passcode check came to. A reservation is `Some` when this caller
/// took it (it ran the check); `None` when it had the answer from memory or
/// from someone else's check of the same passcode.
#[derive(Debug)]
pub enum PasscodeVerdict<R, E> {
    Right(Option<R>),
    /// Wrong passcode, or no such meeting: the same answer.
    Wrong(Option<R>),
    /// The reservation was refused; no check ran.
    Limited(E),
}

/// Entries in [`Accepted`] before it is emptied (it refills as guests join).
const MAX_ACCEPTED: usize = 10_000;

/// Meeting passcodes argon2 has accepted, each next to the stored hash it
/// matched, kept as HMAC-SHA256 under a key that exists only in this process.
///
/// Everyone invited to a meeting types the same passcode, and a meeting
/// starts with everyone joining at once: with one argon2 check each (19 MiB,
/// tens of milliseconds, a few at a time) the hundredth guest waited seconds
/// for the ninety-nine before. Remembering what argon2 accepted makes every
/// later join with the same passcode a MAC away. A wrong guess matches
/// nothing here and still pays for argon2, so guessing costs what it did.
/// A new passcode is a new stored hash, so an old entry never matches again.
/// The plain passcode is not kept, and the MAC is useless without the key.
struct Accepted {
    key: [u8; 32],
    by_hash: Mutex<HashMap<String, [u8; 32]>>,
}

impl Accepted {
    fn new() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Accepted {
            key,
            by_hash: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, passcode: &str) -> [u8; 32] {
        // HMAC takes a key of any length; this one is 32 bytes.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        mac.update(passcode.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Names one passcode for one meeting (its stored hash, or its ID when
    /// there is none) without holding either in the clear.
    fn flight_key(&self, scope: &str, hash: Option<&str>, passcode: &str) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        let hash = hash.unwrap_or_default();
        for part in [scope, hash, passcode] {
            // Lengths first, so that no two triples run together the same.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    fn contains(&self, hash: &str, passcode: &str) -> bool {
        let mac = self.mac(passcode);
        let map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        map.get(hash)
            .is_some_and(|known| bool::from(known.ct_eq(&mac)))
    }

    fn insert(&self, hash: String, passcode: &str) {
        let mac = self.mac(passcode);
        let mut map = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ACCEPTED {
            map.clear();
        }
        map.insert(hash, mac);
    }
}

/// Capacity reserved for argon2's working memory, at least: above glibc's
/// 32 MiB ceiling for its dynamic mmap threshold (`DEFAULT_MMAP_THRESHOLD_MAX`).
///
/// glibc serves a large block from its own mapping and unmaps it on free, but
/// freeing a mapped block of up to 32 MiB raises the process's mmap threshold
/// to that block's size. After the first 19 MiB hash, every later one was
/// therefore carved from a malloc arena, and freed memory in an arena stays
/// resident: one 19 MiB block per arena, up to 8 arenas per core, counted as
/// the cost of the joins that happened to spread over them (17–24 MiB RSS per
/// idle participant in the benchmark). A block reserved above the ceiling is
/// always its own mapping, never raises the threshold, and is unmapped when
/// the hash is done. Only the pages argon2 writes (its 19 MiB) become
/// resident; the rest of the reservation is address space. Other allocators
/// just see a large allocation.
const ARGON2_RESERVE: usize = 33 * 1024 * 1024;

/// Working memory for one argon2 computation with `params`, returned to the
/// allocator (and, with glibc, to the kernel) when dropped.
fn argon2_memory(params: &Params) -> Vec<Block> {
    let blocks = params.block_count();
    let mut memory = Vec::with_capacity(blocks.max(ARGON2_RESERVE / Block::SIZE));
    memory.resize(blocks, Block::default());
    memory
}

/// Argon2 of `secret` and `salt` into `out` (its length is the hash length).
fn argon2_into(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    secret: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let memory = argon2_memory(&params);
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret, salt, out, memory)
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `secret`
/// with a fresh salt and the argon2 crate's default parameters; the same
/// string its `PasswordHasher` would produce, so stored hashes of either kind
/// verify.
pub fn hash_now(secret: &str) -> Result<String, HashError> {
    let err = |e: &dyn std::fmt::Display| HashError::Hash(e.to_string());
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt_string = SaltString::encode_b64(&salt).map_err(|e| err(&e))?;
    let params = Params::default();
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon2_into(
            Algorithm::Argon2id,
            Version::V0x13,
            params.clone(),
            secret.as_bytes(),
            &salt,
            out,
        )
        .map_err(Into::into)
    })
    .map_err(|e| err(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| err(&e))?,
        salt: Some(salt_string.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `secret` matches the PHC string `hash` (argon2 only). The hash
/// comparison is constant-time (`Output`'s equality).
fn verify_now(secret: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    Output::init_with(expected.len(), |out| {
        argon2_into(algorithm, version, params, secret.as_bytes(), salt, out).map_err(Into::into)
    })
    .is_ok_and(|computed| computed == expected)
}

/// Checks a new password: 10 to 256 characters.
pub fn password_acceptable(p: &str) -> bool {
    (10..=256).contains(&p.chars().count())
}

/// Checks a username: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn username_acceptable(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verify_accepts_the_right_secret_only() {
        let h = Hasher::new(2).unwrap();
        let hash = h.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(h.verify("correct horse".into(), Some(hash.clone())).await);
        assert!(!h.verify("wrong".into(), Some(hash)).await);
        assert!(!h.verify("anything".into(), None).await);
        assert!(!h.verify("x".into(), Some("not a hash".into())).await);
    }

    /// Whether `passcode` is right for `hash`, with a reservation that is
    /// never refused.
    async fn right(h: &Hasher, passcode: &str, hash: Option<&str>) -> bool {
        let verdict = h
            .verify_passcode("m", passcode.into(), hash.map(Into::into), || async {
                Ok::<(), ()>(())
            })
            .await;
        matches!(verdict, PasscodeVerdict::Right(_))
    }

    #[tokio::test]
    async fn a_passcode_once_accepted_is_remembered_for_its_hash_only() {
        let h = Hasher::new(2).unwrap();
        let hash = h.hash("4711".into()).await.unwrap();
        let other = h.hash("4711".into()).await.unwrap();
        assert!(!h.accepted.contains(&hash, "4711"));
        assert!(!right(&h, "1234", Some(&hash)).await);
        assert!(
            !h.accepted.contains(&hash, "1234"),
            "a wrong guess is not kept"
        );
        assert!(right(&h, "4711", Some(&hash)).await);
        assert!(h.accepted.contains(&hash, "4711"));
        // Served from memory now, and still exact: a wrong guess is refused.
        let checks = h.checks_run();
        assert!(right(&h, "4711", Some(&hash)).await);
        assert_eq!(h.checks_run(), checks, "no argon2 for a known passcode");
        assert!(!right(&h, "4712", Some(&hash)).await);
        assert_eq!(h.checks_run(), checks + 1);
        // The same passcode under another stored hash (another meeting, or a
        // changed passcode) is checked by argon2 again.
        assert!(!h.accepted.contains(&other, "4711"));
        assert!(!right(&h, "4711", None).await);
        assert!(
            h.flights.lock().unwrap().is_empty(),
            "no flight is left over"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_reservation_runs_no_check() {
        let h = Hasher::new(2).unwrap();
        let hash = h.hash("4711".into()).await.unwrap();
        let verdict = h
            .verify_passcode("m", "1234".into(), Some(hash), || async {
                Err::<(), _>("blocked")
            })
            .await;
        assert!(matches!(verdict, PasscodeVerdict::Limited("blocked")));
        assert_eq!(h.checks_run(), 0);
        assert!(h.flights.lock().unwrap().is_empty());
    }

    /// Two hundred callers at once with the right passcode share one check
    /// and one reservation; two hundred distinct wrong guesses at once each
    /// need a reservation, and get a check only with one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_passcode_at_once_is_checked_once_and_guesses_each_pay() {
        use std::sync::atomic::AtomicUsize;
        let h = Hasher::new(2).unwrap();
        let hash = h.hash("4711".into()).await.unwrap();
        let taken = Arc::new(AtomicUsize::new(0));
        let reserve = |limit: usize| {
            let taken = Arc::clone(&taken);
            move || {
                std::future::ready(if taken.fetch_add(1, Ordering::SeqCst) < limit {
                    Ok(())
                } else {
                    Err(())
                })
            }
        };
        let same = (0..200).map(|_| {
            let (h, hash, reserve) = (h.clone(), hash.clone(), reserve(usize::MAX));
            tokio::spawn(async move {
                h.verify_passcode("m", "4711".into(), Some(hash), reserve)
                    .await
            })
        });
        let verdicts = futures_util::future::join_all(same).await;
        let with_reservation = verdicts
            .iter()
            .filter(|v| matches!(v, Ok(PasscodeVerdict::Right(Some(())))))
            .count();
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Ok(PasscodeVerdict::Right(_))))
        );
        assert_eq!(h.checks_run(), 1, "one check for everyone");
        assert_eq!(with_reservation, 1);
        assert_eq!(taken.load(Ordering::SeqCst), 1);

        taken.store(0, Ordering::SeqCst);
        let guesses = (0..200).map(|i| {
            let (h, hash, reserve) = (h.clone(), hash.clone(), reserve(5));
            tokio::spawn(async move {
                h.verify_passcode("m", format!("guess{i}"), Some(hash), reserve)
                    .await
            })
        });
        let verdicts = futures_util::future::join_all(guesses).await;
        let wrong = verdicts
            .iter()
            .filter(|v| matches!(v, Ok(PasscodeVerdict::Wrong(Some(())))))
            .count();
        let limited = verdicts
            .iter()
            .filter(|v| matches!(v, Ok(PasscodeVerdict::Limited(()))))
            .count();
        assert_eq!((wrong, limited), (5, 195));
        assert_eq!(h.checks_run(), 1 + 5);
        assert!(h.flights.lock().unwrap().is_empty());
    }

    /// Hashes stored before this module computed argon2 itself (by the
    /// argon2 crate's `PasswordHasher`) still verify, and ours verify there.
    #[test]
    fn hashes_match_the_argon2_crates_own() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::encode_b64(b"sixteen byte sal").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"a passcode", &salt)
            .unwrap()
            .to_string();
        assert!(verify_now("a passcode", &theirs));
        assert!(!verify_now("another", &theirs));
        let ours = hash_now("a passcode").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"a passcode", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"another", &parsed)
                .is_err()
        );
        assert_eq!(
            ours.split('$').take(4).collect::<Vec<_>>(),
            theirs.split('$').take(4).collect::<Vec<_>>()
        );
    }

    #[test]
    fn secrets_are_distinct_and_digested() {
        let a = new_secret("cnv_");
        let b = new_secret("cnv_");
        assert_ne!(a.text, b.text);
        assert!(a.text.starts_with("cnv_"));
        assert_eq!(a.text.len(), 4 + 64);
        assert_eq!(digest(&a.text), a.digest);
    }

    #[test]
    fn usernames_and_passwords_are_bounded() {
        assert!(username_acceptable("ada.lovelace"));
        assert!(!username_acceptable("ada lovelace"));
        assert!(!username_acceptable(""));
        assert!(!password_acceptable("short"));
        assert!(password_acceptable("long enough password"));
    }
}
