//! The browser's face of `conclave-e2ee`: wasm-bindgen classes that mirror the Rust API with
//! camelCase names and `Uint8Array` for bytes (see notes on the wire in docs/protocol.md).
//! `crates/conclave/build.rs` compiles this crate for wasm32 and runs wasm-bindgen
//! (`--target web`); the server serves `/e2ee/conclave_e2ee.js` and `/e2ee/conclave_e2ee_bg.wasm`.
//!
//! Errors are thrown as JS `Error`s with the Rust message. KIDs and epochs cross as numbers:
//! they stay far below 2^53.
#![cfg(target_arch = "wasm32")]
#![forbid(unsafe_code)]

use conclave_e2ee as e2ee;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

fn err(e: e2ee::E2eeError) -> JsError {
    JsError::new(&e.to_string())
}

fn set(obj: &Object, key: &str, value: &JsValue) -> Result<(), JsError> {
    Reflect::set(obj, &JsValue::from_str(key), value)
        .map(|_| ())
        .map_err(|_| JsError::new("cannot build the result object"))
}

fn strings(items: &[String]) -> Array {
    items.iter().map(|s| JsValue::from_str(s)).collect()
}

fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

/// One meeting member's end of the MLS group.
#[wasm_bindgen]
pub struct Member(e2ee::Member, e2ee::NameChecker);

#[wasm_bindgen]
impl Member {
    #[wasm_bindgen(constructor)]
    pub fn new(participant_id: &str) -> Result<Member, JsError> {
        e2ee::Member::new(participant_id)
            .map(|m| Member(m, e2ee::NameChecker::default()))
            .map_err(err)
    }

    /// A member signing with a key pair from `newSigningKey`, whose leaf carries the ID token
    /// that vouches for that key and the `rz` of its nonce (OpenPubkey; docs/protocol.md §13).
    #[wasm_bindgen(js_name = withSigningKey)]
    pub fn with_signing_key(
        participant_id: &str,
        secret: &[u8],
        public: &[u8],
        id_token: &str,
        rz: &[u8],
    ) -> Result<Member, JsError> {
        let binding = e2ee::IdentityBinding {
            id_token: id_token.to_string(),
            rz: rz.to_vec(),
        };
        e2ee::Member::with_signing_key(participant_id, secret, public, Some(binding))
            .map(|m| Member(m, e2ee::NameChecker::default()))
            .map_err(err)
    }

    /// Every leaf's name and what vouches for it, as JSON: `[{id, serverName, badge
    /// ("verified" | "server" | "refused"), provider, issuer, name, email, reason, warnings}]`.
    /// `announced`: JSON `[{id, name, signedIn}]` (the server's list); `providers`: JSON
    /// `[{name, issuer, clientId, jwks}]` with each JWK Set as fetched from the provider;
    /// `now`: seconds since the Unix epoch.
    #[wasm_bindgen(js_name = leafNames)]
    /// A leaf verified once stays verified for this member (see `NameChecker`).
    pub fn leaf_names(
        &mut self,
        announced: &str,
        providers: &str,
        now: f64,
    ) -> Result<String, JsError> {
        names_json(&self.0, &mut self.1, announced, providers, now)
    }

    #[wasm_bindgen(js_name = keyPackage)]
    pub fn key_package(&self) -> Result<Vec<u8>, JsError> {
        self.0.key_package().map_err(err)
    }

    #[wasm_bindgen(js_name = createGroup)]
    pub fn create_group(
        &mut self,
        group_id: &[u8],
        external_sender: &[u8],
    ) -> Result<Vec<u8>, JsError> {
        self.0.create_group(group_id, external_sender).map_err(err)
    }

    /// The Welcome and the ratchet tree the server sent with it (`mls_welcome`); the tree is
    /// checked against the Welcome, so a wrong one throws.
    pub fn join(&mut self, welcome: &[u8], ratchet_tree: &[u8]) -> Result<(), JsError> {
        self.0.join(welcome, ratchet_tree).map_err(err)
    }

    /// A handshake message (`mls_message`) only:
    /// `{kind: "proposal"|"commit"|"ignored", epoch, added, removed, removedMe}`.
    pub fn handle(&mut self, message: &[u8]) -> Result<Object, JsError> {
        let received = self.0.handle(message).map_err(err)?;
        received_object(received, self.0.epoch())
    }

    /// A chat payload: `undefined` (our own, or an old epoch's) or `{sender, text}`. Throws for
    /// anything that is not an MLS application message, so chat cannot carry a commit.
    #[wasm_bindgen(js_name = openChat)]
    pub fn open_chat(&mut self, payload: &[u8]) -> Result<JsValue, JsError> {
        let Some(chat) = self.0.open_chat(payload).map_err(err)? else {
            return Ok(JsValue::UNDEFINED);
        };
        let obj = Object::new();
        set(&obj, "sender", &JsValue::from_str(&chat.sender))?;
        set(&obj, "text", &JsValue::from_str(&chat.text))?;
        Ok(obj.into())
    }

    /// The participant ids (strings) the server announced: only these are committed as Adds.
    #[wasm_bindgen(js_name = setAnnounced)]
    pub fn set_announced(&mut self, ids: Vec<String>) {
        self.0.set_announced(ids);
    }

    /// `{notInGroup: [id], notAnnounced: [id]}`: the group against the announced list, exact
    /// strings with multiplicity (an id in the group twice is listed in `notAnnounced`).
    #[wasm_bindgen(js_name = rosterCheck)]
    pub fn roster_check(&self) -> Result<Object, JsError> {
        let check = self.0.roster_check();
        let obj = Object::new();
        set(&obj, "notInGroup", &strings(&check.not_in_group))?;
        set(&obj, "notAnnounced", &strings(&check.not_announced))?;
        Ok(obj)
    }

    /// Apply our pending commit without waiting for its echo; same object as `handle`.
    #[wasm_bindgen(js_name = confirmCommit)]
    pub fn confirm_commit(&mut self) -> Result<Object, JsError> {
        let received = self.0.confirm_commit().map_err(err)?;
        received_object(received, self.0.epoch())
    }

    /// `undefined` or `{commit, welcome}` (welcome `undefined` when nobody is added; no block comment here: wasm-bindgen copies doc comments into a JS block comment).
    pub fn commit(&mut self) -> Result<JsValue, JsError> {
        let Some(out) = self.0.commit().map_err(err)? else {
            return Ok(JsValue::UNDEFINED);
        };
        let obj = Object::new();
        set(&obj, "commit", &bytes(&out.commit))?;
        let welcome = out.welcome.as_deref().map_or(JsValue::UNDEFINED, bytes);
        set(&obj, "welcome", &welcome)?;
        Ok(obj.into())
    }

    /// `{commit, welcome}`: an update commit (a fresh path, with any proposals held), asked of a newcomer by `mls_update_request`.
    pub fn update(&mut self) -> Result<Object, JsError> {
        let out = self.0.update().map_err(err)?;
        let obj = Object::new();
        set(&obj, "commit", &bytes(&out.commit))?;
        let welcome = out.welcome.as_deref().map_or(JsValue::UNDEFINED, bytes);
        set(&obj, "welcome", &welcome)?;
        Ok(obj)
    }

    #[wasm_bindgen(js_name = encryptChat)]
    pub fn encrypt_chat(&mut self, text: &str) -> Result<Vec<u8>, JsError> {
        self.0.encrypt_chat(text).map_err(err)
    }

    pub fn epoch(&self) -> f64 {
        self.0.epoch() as f64
    }

    #[wasm_bindgen(js_name = securityCode)]
    pub fn security_code(&self) -> String {
        self.0.security_code()
    }

    pub fn roster(&self) -> Array {
        strings(&self.0.roster())
    }

    #[wasm_bindgen(js_name = myIndex)]
    pub fn my_index(&self) -> u32 {
        self.0.my_index()
    }

    /// `{epoch, senderKid, keys: [{kid, key, participant}]}` for `FrameCrypto.setEpoch`.
    #[wasm_bindgen(js_name = sframeKeys)]
    pub fn sframe_keys(&self) -> Result<Object, JsError> {
        let keys = self.0.sframe_keys();
        let obj = Object::new();
        set(&obj, "epoch", &JsValue::from_f64(keys.epoch as f64))?;
        set(
            &obj,
            "senderKid",
            &JsValue::from_f64(keys.sender_kid as f64),
        )?;
        let list = Array::new();
        for (kid, key) in &keys.keys {
            let entry = Object::new();
            set(&entry, "kid", &JsValue::from_f64(*kid as f64))?;
            set(&entry, "key", &bytes(key))?;
            if let Some((_, participant)) = keys.senders.iter().find(|(k, _)| k == kid) {
                set(&entry, "participant", &JsValue::from_str(participant))?;
            }
            list.push(&entry);
        }
        set(&obj, "keys", &list)?;
        Ok(obj)
    }
}

/// A fresh Ed25519 key pair for MLS, made before sign-in: `{secret, public}`.
#[wasm_bindgen(js_name = newSigningKey)]
pub fn new_signing_key() -> Result<Object, JsError> {
    let (secret, public) = e2ee::Member::new_signing_key().map_err(err)?;
    let obj = Object::new();
    set(&obj, "secret", &bytes(&secret))?;
    set(&obj, "public", &bytes(&public))?;
    Ok(obj)
}

/// The OIDC `nonce` that commits to `public` with the random `rz` (32 bytes).
#[wasm_bindgen(js_name = keyNonce)]
pub fn key_nonce(public: &[u8], rz: &[u8]) -> String {
    e2ee::openpubkey::nonce(public, rz)
}

fn names_json(
    member: &e2ee::Member,
    checker: &mut e2ee::NameChecker,
    announced: &str,
    providers: &str,
    now: f64,
) -> Result<String, JsError> {
    use serde_json::{Value, json};
    let bad = |what: &str| JsError::new(&format!("{what} is not the expected JSON"));
    let announced: Vec<Value> = serde_json::from_str(announced).map_err(|_| bad("announced"))?;
    let announced = announced
        .iter()
        .filter_map(|a| {
            let id = match a.get("id")? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            let name = a.get("name")?.as_str()?.to_string();
            let signed_in = a.get("signedIn").and_then(Value::as_bool).unwrap_or(false);
            Some((id, e2ee::AnnouncedName { name, signed_in }))
        })
        .collect();
    let providers: Vec<Value> = serde_json::from_str(providers).map_err(|_| bad("providers"))?;
    let providers: Vec<e2ee::openpubkey::TrustedProvider> = providers
        .iter()
        .filter_map(|p| {
            Some(e2ee::openpubkey::TrustedProvider {
                name: p.get("name")?.as_str()?.to_string(),
                issuer: p.get("issuer")?.as_str()?.to_string(),
                client_id: p.get("clientId")?.as_str()?.to_string(),
                jwks_json: p.get("jwks")?.to_string(),
            })
        })
        .collect();
    let checks = checker.check(&member.leaves(), &announced, &providers, now as i64);
    let out: Vec<Value> = checks
        .iter()
        .map(|c| {
            let (badge, verified, reason) = match &c.badge {
                e2ee::Badge::Verified(v) => ("verified", Some(v), None),
                e2ee::Badge::FromServer => ("server", None, None),
                e2ee::Badge::Refused(e) => ("refused", None, Some(e.to_string())),
            };
            let warnings: Vec<String> = c
                .warnings
                .iter()
                .map(|w| match w {
                    e2ee::NameWarning::Renamed { server_says, provider_says } => format!(
                        "the server calls them \u{201c}{server_says}\u{201d}; {} says \u{201c}{provider_says}\u{201d}",
                        verified.map_or("the provider", |v| v.provider.as_str())
                    ),
                    e2ee::NameWarning::BadBinding(e) => format!("their sign-in proof is refused: {e}"),
                    e2ee::NameWarning::SameNameAsVerified { .. } => {
                        "not verified, under the name of a verified member".to_string()
                    }
                    e2ee::NameWarning::NotAnnounced => "in the group, not shown by the server".to_string(),
                })
                .collect();
            json!({
                "id": c.participant_id,
                "serverName": c.server_name,
                "badge": badge,
                "provider": verified.map(|v| v.provider.clone()),
                "issuer": verified.map(|v| v.issuer.clone()),
                "name": verified.and_then(|v| v.name.clone()),
                "email": verified.and_then(|v| v.email.clone()),
                "reason": reason,
                "warnings": warnings,
            })
        })
        .collect();
    Ok(Value::Array(out).to_string())
}

fn received_object(received: e2ee::Received, current_epoch: u64) -> Result<Object, JsError> {
    let obj = Object::new();
    let (kind, epoch, added, removed, removed_me) = match received {
        e2ee::Received::Proposal => ("proposal", current_epoch, vec![], vec![], false),
        e2ee::Received::Commit {
            epoch,
            added,
            removed,
            removed_me,
        } => ("commit", epoch, added, removed, removed_me),
        e2ee::Received::Ignored => ("ignored", current_epoch, vec![], vec![], false),
    };
    set(&obj, "kind", &JsValue::from_str(kind))?;
    set(&obj, "epoch", &JsValue::from_f64(epoch as f64))?;
    set(&obj, "added", &strings(&added))?;
    set(&obj, "removed", &strings(&removed))?;
    set(&obj, "removedMe", &JsValue::from_bool(removed_me))?;
    Ok(obj)
}

fn kind_of(kind: &str) -> Result<e2ee::FrameKind, JsError> {
    match kind {
        "audio" => Ok(e2ee::FrameKind::Audio),
        "vp8" => Ok(e2ee::FrameKind::Vp8),
        _ => Err(JsError::new("frame kind must be \"audio\" or \"vp8\"")),
    }
}

fn number(obj: &JsValue, key: &str) -> Result<u64, JsError> {
    let v = Reflect::get(obj, &JsValue::from_str(key))
        .ok()
        .and_then(|v| v.as_f64())
        .ok_or_else(|| JsError::new(&format!("keys.{key} must be a number")))?;
    if !(0.0..=9_007_199_254_740_991.0).contains(&v) || v.fract() != 0.0 {
        return Err(JsError::new(&format!("keys.{key} out of range")));
    }
    Ok(v as u64)
}

/// SFrame for one media worker: holds only keys, no MLS state.
#[wasm_bindgen]
pub struct FrameCrypto {
    inner: e2ee::FrameCrypto,
    out: Vec<u8>,
}

impl Default for FrameCrypto {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen]
impl FrameCrypto {
    #[wasm_bindgen(constructor)]
    pub fn new() -> FrameCrypto {
        FrameCrypto {
            inner: e2ee::FrameCrypto::new(),
            out: Vec::new(),
        }
    }

    /// `keys` as `Member.sframeKeys()` gives it (it may have crossed a postMessage). This member
    /// sends with the new key at once when `at_once` is true (its first epoch, or a commit that
    /// removed someone), otherwise after `SEND_SWITCH_DELAY_MS`, when the others hold it too.
    #[wasm_bindgen(js_name = setEpoch)]
    pub fn set_epoch(
        &mut self,
        keys: &JsValue,
        now_ms: f64,
        at_once: Option<bool>,
    ) -> Result<(), JsError> {
        let epoch = number(keys, "epoch")?;
        let sender_kid = number(keys, "senderKid")?;
        let list = Reflect::get(keys, &JsValue::from_str("keys"))
            .ok()
            .filter(Array::is_array)
            .map(|v| v.unchecked_into::<Array>())
            .ok_or_else(|| JsError::new("keys.keys must be an array"))?;
        let mut entries = Vec::with_capacity(list.length() as usize);
        let mut senders = Vec::with_capacity(list.length() as usize);
        for entry in list.iter() {
            let kid = number(&entry, "kid")?;
            let key = Reflect::get(&entry, &JsValue::from_str("key"))
                .ok()
                .filter(|k| k.is_instance_of::<Uint8Array>())
                .map(|k| Uint8Array::from(k).to_vec())
                .ok_or_else(|| JsError::new("keys.keys[].key must be a Uint8Array"))?;
            if let Some(participant) = Reflect::get(&entry, &JsValue::from_str("participant"))
                .ok()
                .and_then(|p| p.as_string())
            {
                senders.push((kid, participant));
            }
            entries.push((kid, key));
        }
        let keys = e2ee::EpochKeys {
            epoch,
            sender_kid,
            keys: entries,
            senders,
        };
        let send = if at_once.unwrap_or(true) {
            e2ee::SendSwitch::AtOnce
        } else {
            e2ee::SendSwitch::AfterDelay
        };
        self.inner.switch_epoch(&keys, now_ms.max(0.0) as u64, send);
        Ok(())
    }

    /// Encrypts with the key this member sends with at `now_ms` (without it, the newest).
    pub fn encrypt(
        &mut self,
        kind: &str,
        frame: &[u8],
        now_ms: Option<f64>,
    ) -> Result<Vec<u8>, JsError> {
        let now = now_ms.map_or(u64::MAX, |t| t.max(0.0) as u64);
        self.inner
            .encrypt_at(kind_of(kind)?, frame, now, &mut self.out)
            .map_err(err)?;
        Ok(self.out.clone())
    }

    pub fn decrypt(&mut self, kind: &str, frame: &[u8], now_ms: f64) -> Result<Vec<u8>, JsError> {
        self.inner
            .decrypt(kind_of(kind)?, frame, now_ms.max(0.0) as u64, &mut self.out)
            .map_err(err)?;
        Ok(self.out.clone())
    }

    /// `decrypt` for a track of `participant`: refused unless the frame's KID is theirs.
    #[wasm_bindgen(js_name = decryptFrom)]
    pub fn decrypt_from(
        &mut self,
        kind: &str,
        frame: &[u8],
        participant: &str,
        now_ms: f64,
    ) -> Result<Vec<u8>, JsError> {
        self.inner
            .decrypt_from(
                kind_of(kind)?,
                frame,
                participant,
                now_ms.max(0.0) as u64,
                &mut self.out,
            )
            .map_err(err)?;
        Ok(self.out.clone())
    }
}

/// RFC 9605 Appendix C check from JS: encrypt `pt` with an explicit KID and CTR.
#[wasm_bindgen(js_name = sframeEncryptRaw)]
pub fn sframe_encrypt_raw(
    base_key: &[u8],
    kid: f64,
    ctr: f64,
    metadata: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>, JsError> {
    e2ee::rfc9605::encrypt(base_key, kid as u64, ctr as u64, metadata, pt).map_err(err)
}
