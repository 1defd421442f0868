//! RFC 9605 Appendix C test vector for AES_128_GCM_SHA256_128, through the crate's SFrame layer.

use conclave_e2ee::rfc9605;

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

struct Vector {
    kid: u64,
    ctr: u64,
    base_key: Vec<u8>,
    metadata: Vec<u8>,
    aad: Vec<u8>,
    pt: Vec<u8>,
    ct: Vec<u8>,
}

fn vector() -> Vector {
    let text = include_str!("vectors/rfc9605_aes_128_gcm_sha256_128.json");
    let v: serde_json::Value = serde_json::from_str(text).expect("vector JSON");
    let field = |k: &str| hex(v[k].as_str().expect("hex string"));
    assert_eq!(v["cipher_suite"], 4);
    Vector {
        kid: v["kid"].as_u64().expect("kid"),
        ctr: v["ctr"].as_u64().expect("ctr"),
        base_key: field("base_key"),
        metadata: field("metadata"),
        aad: field("aad"),
        pt: field("pt"),
        ct: field("ct"),
    }
}

#[test]
fn encryption_matches_rfc9605_appendix_c() {
    let v = vector();
    let ct = rfc9605::encrypt(&v.base_key, v.kid, v.ctr, &v.metadata, &v.pt).expect("encrypt");
    assert_eq!(hex_string(&ct), hex_string(&v.ct));
    // The vector's AAD is the SFrame header followed by the metadata (RFC 9605 §4.4.3).
    let header_len = v.aad.len() - v.metadata.len();
    assert_eq!(&ct[..header_len], &v.aad[..header_len]);
}

#[test]
fn decryption_matches_rfc9605_appendix_c() {
    let v = vector();
    let pt = rfc9605::decrypt(&v.base_key, &v.metadata, &v.ct).expect("decrypt");
    assert_eq!(pt, v.pt);
}

#[test]
fn changed_metadata_or_ciphertext_fails_authentication() {
    let v = vector();
    let mut metadata = v.metadata.clone();
    metadata[0] ^= 0x01;
    assert!(rfc9605::decrypt(&v.base_key, &metadata, &v.ct).is_err());
    for i in 0..v.ct.len() {
        let mut ct = v.ct.clone();
        ct[i] ^= 0x80;
        assert!(
            rfc9605::decrypt(&v.base_key, &v.metadata, &ct).is_err(),
            "byte {i}"
        );
    }
    let mut key = v.base_key.clone();
    key[15] ^= 1;
    assert!(rfc9605::decrypt(&key, &v.metadata, &v.ct).is_err());
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
