//! `cargo xtask bench identity`: the cost of the signed envelope beside bare Ed25519.
//!
//! - `sign_ns`: `Signed::sign` (encode the payload, build the envelope, sign) vs
//!   `ed25519_dalek::SigningKey::sign` over the same encoded payload.
//! - `verify_ns`: `Signed::verify` on a decoded envelope vs `VerifyingKey::verify_strict` over
//!   the same encoded payload (both strict, both with the key already decompressed).
//! - `decode_verify_ns`: `Signed::decode` + `verify` from bytes vs decompressing the key
//!   from bytes + `verify_strict`.
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use p2p_foundation_benchkit::{Better, Suite};
use p2p_foundation_identity::{Keypair, Signed, SignedPayload};

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    name: String,
    addrs: Vec<String>,
    load: u32,
}

impl SignedPayload for Record {
    const DOMAIN: &'static str = "bench/record";
}

fn main() {
    let mut suite = Suite::new("identity");
    let keypair = Keypair::from_secret_bytes([42; 32]);
    let raw_key = SigningKey::from_bytes(&keypair.secret_bytes());
    let raw_public: VerifyingKey = raw_key.verifying_key();
    let record = Record {
        name: "tool/generate_text".into(),
        addrs: vec!["203.0.113.9:9000".into(), "[2001:db8::9]:9000".into()],
        load: 17,
    };
    let encoded = bincode::serde::encode_to_vec(&record, bincode::config::standard()).unwrap();
    let expiry = SystemTime::now() + Duration::from_secs(3600);

    let (ours, base) = suite.compare_ns(
        || Signed::sign(&keypair, black_box(record.clone()), 1, expiry).unwrap(),
        || {
            let payload = black_box(record.clone());
            let bytes =
                bincode::serde::encode_to_vec(&payload, bincode::config::standard()).unwrap();
            raw_key.sign(&bytes)
        },
    );
    suite.record_vs(
        "sign_ns",
        ours,
        "ns",
        Better::Lower,
        "ed25519_dalek.sign_ns",
        base,
    );

    let signed = Signed::sign(&keypair, record.clone(), 1, expiry).unwrap();
    let raw_signature = raw_key.sign(&encoded);
    let now = SystemTime::now();
    let (ours, base) = suite.compare_ns(
        // `verify` consumes the envelope; the clone (tens of ns) is noise beside the
        // signature check (tens of µs).
        || black_box(signed.clone()).verify(now).is_ok(),
        || {
            raw_public
                .verify_strict(black_box(&encoded), &raw_signature)
                .is_ok()
        },
    );
    suite.record_vs(
        "verify_ns",
        ours,
        "ns",
        Better::Lower,
        "ed25519_dalek.verify_ns",
        base,
    );

    let wire = signed.as_bytes().to_vec();
    let public_bytes = raw_public.to_bytes();
    let (ours, base) = suite.compare_ns(
        || {
            Signed::<Record>::decode(black_box(&wire))
                .unwrap()
                .verify(now)
                .is_ok()
        },
        || {
            let key = VerifyingKey::from_bytes(black_box(&public_bytes)).unwrap();
            key.verify_strict(black_box(&encoded), &raw_signature)
                .is_ok()
        },
    );
    suite.record_vs(
        "decode_verify_ns",
        ours,
        "ns",
        Better::Lower,
        "ed25519_dalek.from_bytes_verify_ns",
        base,
    );
    suite.record(
        "envelope_overhead_bytes",
        (wire.len() - encoded.len()) as f64,
        "bytes",
        Better::Lower,
    );
    suite.finish();
}
