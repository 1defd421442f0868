//! The MLS configuration shared by members and the delivery service.

use mls_rs::{
    CipherSuite, CipherSuiteProvider, CryptoProvider,
    client_builder::{BaseConfig, WithCryptoProvider, WithIdentityProvider, WithMlsRules},
    crypto::{SignaturePublicKey, SignatureSecretKey},
    external_client::builder::{self as ext_builder, ExternalBaseConfig},
    identity::{SigningIdentity, basic::BasicCredential, basic::BasicIdentityProvider},
    mls_rules::{CommitOptions, DefaultMlsRules, EncryptionOptions},
};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;

use crate::{E2eeError, rules::MemberRules};

/// MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.
pub(crate) const CIPHER_SUITE: CipherSuite = CipherSuite::CURVE25519_AES128;

pub(crate) type MemberConfig = WithMlsRules<
    MemberRules,
    WithCryptoProvider<RustCryptoProvider, WithIdentityProvider<BasicIdentityProvider, BaseConfig>>,
>;

pub(crate) type DsConfig = ext_builder::WithMlsRules<
    DefaultMlsRules,
    ext_builder::WithCryptoProvider<
        RustCryptoProvider,
        ext_builder::WithIdentityProvider<BasicIdentityProvider, ExternalBaseConfig>,
    >,
>;

/// Rules every member follows: Welcome and GroupInfo leave the ratchet tree out (it grows by
/// some 300 bytes a member; the server, which follows the tree from the commits, gives it to
/// newcomers apart, and they check it against the Welcome), commits and proposals are
/// PublicMessages (so the server can validate them), application messages are
/// PrivateMessages (always, in MLS).
pub(crate) fn rules() -> DefaultMlsRules {
    DefaultMlsRules::new()
        .with_commit_options(
            CommitOptions::new()
                .with_ratchet_tree_extension(false)
                .with_single_welcome_message(true)
                .with_path_required(true),
        )
        .with_encryption_options(EncryptionOptions::new(
            false,
            mls_rs::client_builder::PaddingMode::StepFunction,
        ))
}

pub(crate) fn cipher_suite_provider()
-> Result<<RustCryptoProvider as CryptoProvider>::CipherSuiteProvider, E2eeError> {
    RustCryptoProvider::default()
        .cipher_suite_provider(CIPHER_SUITE)
        .ok_or(E2eeError::Mls(
            mls_rs::error::MlsError::UnsupportedCipherSuite(CIPHER_SUITE),
        ))
}

/// A fresh Ed25519 signing key and the identity that carries `name` as a BasicCredential.
pub(crate) fn new_identity(name: &str) -> Result<(SignatureSecretKey, SigningIdentity), E2eeError> {
    let cs = cipher_suite_provider()?;
    let (secret, public): (SignatureSecretKey, SignaturePublicKey) =
        cs.signature_key_generate().map_err(|e| {
            E2eeError::Mls(mls_rs::error::MlsError::CryptoProviderError(
                mls_rs::error::IntoAnyError::into_any_error(e),
            ))
        })?;
    let credential = BasicCredential::new(name.as_bytes().to_vec()).into_credential();
    Ok((secret, SigningIdentity::new(credential, public)))
}

/// The identity that carries `name` as a BasicCredential, with a key made earlier.
pub(crate) fn identity_with_key(name: &str, public: &[u8]) -> SigningIdentity {
    let credential = BasicCredential::new(name.as_bytes().to_vec()).into_credential();
    SigningIdentity::new(credential, SignaturePublicKey::new(public.to_vec()))
}

/// The participant id a signing identity carries (lossy for non-UTF-8 credentials, which no
/// Conclave participant has; they then match no id).
pub(crate) fn identity_name(identity: &SigningIdentity) -> String {
    match identity.credential.as_basic() {
        Some(basic) => String::from_utf8_lossy(basic.identifier()).into_owned(),
        None => String::new(),
    }
}

/// Participant ids are the server's decimal numbers, in one spelling; refuse anything else early.
pub(crate) fn check_participant_id(id: &str) -> Result<(), E2eeError> {
    if !crate::rules::is_canonical_participant_id(id) {
        return Err(E2eeError::UnknownParticipant(id.to_string()));
    }
    Ok(())
}
