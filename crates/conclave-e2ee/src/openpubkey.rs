//! Names a modified server cannot fake: the OpenPubkey technique (Heilman et al., IACR ePrint
//! 2023/296) on a member's MLS signature key.
//!
//! The client makes its signature key pair before it signs in, and asks the provider for an ID
//! token whose `nonce` is [`nonce`] of that public key and a random `rz`. The provider signs the
//! token, so the token says "this person holds this key" in the provider's own signature. The
//! member puts the token and `rz` in its leaf ([`IdentityBinding`], leaf node extension
//! [`BINDING_EXTENSION`]); the leaf is signed with the same key, and MLS checks that signature
//! on every member. Every other member checks the token with the provider's keys, fetched from
//! the provider ([`verify`], feature `id-token`), never with anything the Conclave server says.
//!
//! What the server can still do: show a name of its choosing for a member with no binding
//! (the roster then says "name from the server"), or replay a member's token under another key,
//! which fails the nonce check here. It cannot make a token for a key the provider never saw.

use mls_rs::{
    Extension, ExtensionList,
    extension::ExtensionType,
    mls_rs_codec::{MlsDecode, MlsEncode},
};
use sha2::{Digest, Sha256};

/// Leaf node extension type of [`IdentityBinding`], from the private-use range of RFC 9420
/// §17.3 (0xF000–0xFFFF).
pub const BINDING_EXTENSION: u16 = 0xF1D7;

/// Bytes of `rz`, the random value that hides the key in the nonce from the provider's logs.
pub const RZ_LEN: usize = 32;

/// Prefix of the hashed nonce input: a token obtained for another purpose with the same key
/// bytes cannot be mistaken for a Conclave binding.
const NONCE_LABEL: &[u8] = b"conclave openpubkey v1 Ed25519";

/// An ID token that vouches for the leaf's signature key, and the `rz` that opens its nonce.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityBinding {
    /// The ID token as the provider issued it (compact JWS, ASCII).
    pub id_token: String,
    /// The random value in the nonce, [`RZ_LEN`] bytes.
    pub rz: Vec<u8>,
}

impl std::fmt::Debug for IdentityBinding {
    // A token is a bearer secret for as long as it lives: kept out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityBinding")
            .field("id_token_len", &self.id_token.len())
            .finish_non_exhaustive()
    }
}

/// Why a binding is not good: each a reason to flag the member, not to trust the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The extension does not decode as an [`IdentityBinding`].
    #[error("identity binding does not decode")]
    Malformed,
    /// The token's issuer is not one this client trusts.
    #[error("token issuer {0:?} is not a trusted provider")]
    UntrustedIssuer(String),
    /// The nonce is not the one for this leaf's signature key and the binding's `rz`: a token
    /// taken from another member (or another key) and put in this leaf.
    #[error("token nonce is not this member's key")]
    NonceMismatch,
    /// The token itself does not verify: signature, algorithm, audience, expiry.
    #[error("token refused: {0}")]
    Token(String),
}

/// The `nonce` to ask the provider for: base64url (no padding) of SHA-256 over a label, the
/// length of the key (2 bytes, big-endian), the Ed25519 public key and `rz`.
pub fn nonce(signature_public_key: &[u8], rz: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(NONCE_LABEL);
    let len = u16::try_from(signature_public_key.len()).unwrap_or(u16::MAX);
    hash.update(len.to_be_bytes());
    hash.update(signature_public_key);
    hash.update(rz);
    data_encoding::BASE64URL_NOPAD.encode(&hash.finalize())
}

impl IdentityBinding {
    /// `struct { opaque id_token<V>; opaque rz<V>; }` in the MLS presentation language.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.id_token.len() + self.rz.len() + 8);
        // Encoding a byte vector into a Vec cannot fail short of running out of memory.
        let _ = self.id_token.as_bytes().to_vec().mls_encode(&mut out);
        let _ = self.rz.mls_encode(&mut out);
        out
    }

    pub fn from_bytes(mut bytes: &[u8]) -> Result<IdentityBinding, BindingError> {
        let token = Vec::<u8>::mls_decode(&mut bytes).map_err(|_| BindingError::Malformed)?;
        let rz = Vec::<u8>::mls_decode(&mut bytes).map_err(|_| BindingError::Malformed)?;
        if !bytes.is_empty() || rz.len() != RZ_LEN {
            return Err(BindingError::Malformed);
        }
        let id_token = String::from_utf8(token).map_err(|_| BindingError::Malformed)?;
        Ok(IdentityBinding { id_token, rz })
    }

    /// Whether the token's nonce commits to `signature_public_key` with this `rz`.
    pub fn nonce_matches(&self, signature_public_key: &[u8], token_nonce: &str) -> bool {
        let expected = nonce(signature_public_key, &self.rz);
        // Both are public (the token is in the tree); no need for constant time.
        expected == token_nonce
    }

    pub(crate) fn leaf_extensions(&self) -> ExtensionList {
        let mut list = ExtensionList::new();
        list.set(Extension::new(
            ExtensionType::new(BINDING_EXTENSION),
            self.to_bytes(),
        ));
        list
    }

    /// The binding a leaf carries, if any.
    pub(crate) fn of_leaf(extensions: &ExtensionList) -> Option<Result<Self, BindingError>> {
        extensions
            .get(ExtensionType::new(BINDING_EXTENSION))
            .map(|ext| IdentityBinding::from_bytes(&ext.extension_data))
    }
}

#[cfg(feature = "id-token")]
pub use verify::{TrustedProvider, VerifiedName, verify};

#[cfg(feature = "id-token")]
mod verify {
    use openidconnect::{
        ClientId, IssuerUrl, Nonce,
        core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm},
    };

    use super::{BindingError, IdentityBinding};

    /// A provider this client trusts to vouch for names, with the keys it fetched from the
    /// provider's own `jwks_uri` (found through `ISSUER/.well-known/openid-configuration`).
    #[derive(Debug, Clone)]
    pub struct TrustedProvider {
        /// What the roster shows: "verified by NAME".
        pub name: String,
        /// The `iss` its tokens carry, exactly.
        pub issuer: String,
        /// The Conclave deployment's client id at this provider: the tokens' `aud`.
        pub client_id: String,
        /// The provider's JWK Set document (JSON) as fetched from the provider.
        pub jwks_json: String,
    }

    /// What a good binding proves: the provider said, before `expires_at`, that the person
    /// `subject` (with this name and email) holds the leaf's signature key.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct VerifiedName {
        pub provider: String,
        pub issuer: String,
        pub subject: String,
        pub name: Option<String>,
        pub email: Option<String>,
        /// `preferred_username`: what a server shows by default for an account it made at
        /// the first sign-in, so a server that shows it is not renaming anyone.
        pub preferred_username: Option<String>,
        /// The token's `exp`, seconds since the Unix epoch.
        pub expires_at: i64,
    }

    /// The `iss` of a token, read without trusting it, to pick the provider whose keys check it.
    fn claimed_issuer(token: &str) -> Result<String, BindingError> {
        let malformed = || BindingError::Token("not a JWS in compact form".into());
        let payload = token.split('.').nth(1).ok_or_else(malformed)?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .map_err(|_| malformed())?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
        value
            .get("iss")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(malformed)
    }

    /// Check `binding` for the leaf whose signature key is `signature_public_key`, at `now`
    /// (seconds since the Unix epoch): the token's issuer must be one of `providers`, its
    /// signature must verify with that provider's keys under an asymmetric algorithm (RS256,
    /// ES256, EdDSA…; never `none`, never HMAC, so a token "signed" with the public key as an
    /// HMAC secret is refused), its `aud` must be the provider's `client_id`, it must not have
    /// expired, and its `nonce` must commit to this key and the binding's `rz`.
    pub fn verify(
        binding: &IdentityBinding,
        signature_public_key: &[u8],
        providers: &[TrustedProvider],
        now: i64,
    ) -> Result<VerifiedName, BindingError> {
        let issuer = claimed_issuer(&binding.id_token)?;
        let provider = providers
            .iter()
            .find(|p| p.issuer == issuer)
            .ok_or_else(|| BindingError::UntrustedIssuer(issuer.clone()))?;
        let jwks: CoreJsonWebKeySet = serde_json::from_str(&provider.jwks_json)
            .map_err(|e| BindingError::Token(format!("provider keys do not parse: {e}")))?;
        let issuer_url = IssuerUrl::new(provider.issuer.clone())
            .map_err(|e| BindingError::Token(format!("issuer is not a URL: {e}")))?;
        let now = chrono::DateTime::from_timestamp(now, 0)
            .ok_or_else(|| BindingError::Token("time out of range".into()))?;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(provider.client_id.clone()),
            issuer_url,
            jwks,
        )
        .set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::RsaSsaPssSha384,
            CoreJwsSigningAlgorithm::RsaSsaPssSha512,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EcdsaP384Sha384,
            CoreJwsSigningAlgorithm::EdDsa,
        ])
        .set_time_fn(move || now);
        let token: CoreIdToken = binding
            .id_token
            .parse()
            .map_err(|e| BindingError::Token(format!("does not parse: {e}")))?;
        let mut nonce_ok = true;
        let claims = token
            .claims(&verifier, |n: Option<&Nonce>| {
                nonce_ok =
                    n.is_some_and(|n| binding.nonce_matches(signature_public_key, n.secret()));
                if nonce_ok {
                    Ok(())
                } else {
                    Err("nonce is not this member's key".into())
                }
            })
            .map_err(|e| {
                if nonce_ok {
                    let mut reason = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        reason = format!("{reason}: {cause}");
                        source = cause.source();
                    }
                    BindingError::Token(reason)
                } else {
                    BindingError::NonceMismatch
                }
            })?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
        Ok(VerifiedName {
            provider: provider.name.clone(),
            issuer,
            subject: claims.subject().as_str().to_owned(),
            name,
            // An address the provider itself has not checked is not vouched for.
            email: claims
                .email()
                .filter(|_| claims.email_verified() != Some(false))
                .map(|e| e.as_str().to_owned()),
            preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
            expires_at: claims.expiration().timestamp(),
        })
    }
}
