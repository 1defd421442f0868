//! The SRTP keys of a session, taken from str0m's DTLS handshake.
//!
//! The fast forwarding path (issue 16) seals RTP for a subscriber itself,
//! outside str0m's send queue, so it needs the SRTP master keys the DTLS
//! handshake produced. str0m does not hand them out, but its crypto is
//! pluggable: [`ExportingDtlsProvider`] wraps the DTLS provider str0m would
//! use anyway, passes every call through, and copies
//! `DtlsOutput::KeyingMaterial` (RFC 5764 §4.2: both directions' master keys
//! and salts, and the protection profile) into a [`KeySlot`] as it goes by.
//! Nothing is forked and str0m still keys its own SRTP from the same output.
//!
//! str0m's provider table holds `&'static` references, so one provider
//! serves every session; [`build_rtc`] links a session to its slot. str0m
//! creates the DTLS instance inside `RtcConfig::build` and never again for
//! that `Rtc`, so the slot of the instance created last on this thread, taken
//! right after `build` returns, is that session's.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::{Rtc, RtcConfig};

/// One handshake's SRTP keying material, as str0m got it.
#[derive(Clone)]
pub struct ExportedKeys {
    /// client key ‖ server key ‖ client salt ‖ server salt (RFC 5764 §4.2).
    pub material: Vec<u8>,
    pub profile: SrtpProfile,
    /// We were the DTLS client: our sending half is the client's.
    pub active: bool,
    /// Counts handshakes that produced keys on this session: a sealer keyed
    /// from an older generation must be rebuilt.
    pub generation: u64,
}

impl std::fmt::Debug for ExportedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes, even in a debug log.
        f.debug_struct("ExportedKeys")
            .field("profile", &self.profile)
            .field("active", &self.active)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Where a session's keys appear once its handshake completes.
#[derive(Debug, Clone, Default)]
pub struct KeySlot(Arc<Mutex<Option<ExportedKeys>>>);

impl KeySlot {
    /// The latest keys, if the handshake has produced any.
    pub fn get(&self) -> Option<ExportedKeys> {
        // A poisoned lock only means a panic elsewhere while it was held;
        // the value inside is still whole (it is replaced in one assignment).
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn put(&self, material: &[u8], profile: SrtpProfile, active: bool) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let generation = slot.as_ref().map_or(1, |k| k.generation + 1);
        *slot = Some(ExportedKeys {
            material: material.to_vec(),
            profile,
            active,
            generation,
        });
    }
}

thread_local! {
    /// The slot of the DTLS instance created last on this thread.
    static LAST_SLOT: RefCell<Option<KeySlot>> = const { RefCell::new(None) };
}

/// The provider str0m would have used: the process default if one was
/// installed, else the one its features select (as `Rtc` itself decides).
pub fn base_provider() -> &'static CryptoProvider {
    static BASE: OnceLock<CryptoProvider> = OnceLock::new();
    BASE.get_or_init(|| {
        CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(str0m::crypto::from_feature_flags)
    })
}

/// The whole crypto provider with the exporting DTLS wrapped in.
fn exporting_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                dtls_provider: &ExportingDtlsProvider,
                ..base_provider().clone()
            })
        })
        .clone()
}

/// Builds an `Rtc` whose SRTP keys will appear in the returned slot.
pub fn build_rtc(config: RtcConfig, now: Instant) -> (Rtc, KeySlot) {
    LAST_SLOT.with(|s| s.borrow_mut().take());
    let rtc = config.set_crypto_provider(exporting_provider()).build(now);
    // Always set: build creates the DTLS instance. Were that ever to change,
    // the session simply has no exported keys (a fresh, empty slot) and the
    // fast path is never used for it.
    let slot = LAST_SLOT
        .with(|s| s.borrow_mut().take())
        .unwrap_or_default();
    (rtc, slot)
}

/// str0m's own DTLS provider, with each instance copying its keys out.
#[derive(Debug)]
pub struct ExportingDtlsProvider;

impl DtlsProvider for ExportingDtlsProvider {
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
        let slot = KeySlot::default();
        LAST_SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
        Ok(Box::new(ExportingDtls { inner, slot }))
    }

    fn is_test(&self) -> bool {
        base_provider().dtls_provider.is_test()
    }
}

#[derive(Debug)]
struct ExportingDtls {
    inner: Box<dyn DtlsInstance>,
    slot: KeySlot,
}

impl DtlsInstance for ExportingDtls {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &out {
            self.slot.put(material, *profile, self.inner.is_active());
        }
        out
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
