//! SDK local verification rate: `Verifier::verify` (cached keys, every check) on one thread,
//! beside the bare signature check of `jsonwebtoken::decode` in the same run.
//! Run: `cargo bench -p steward-client --bench verify` (`STEWARD_BENCH_SECS`, default 3).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use steward_client::{Verifier, VerifierConfig};

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn rate(secs: Duration, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut lat = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < secs {
        let s = Instant::now();
        f();
        lat.push(s.elapsed().as_nanos() as u64);
    }
    let n = lat.len();
    lat.sort_unstable();
    let p = |q: f64| lat[((n - 1) as f64 * q) as usize] as f64 / 1000.0;
    (n as f64 / t0.elapsed().as_secs_f64(), p(0.5), p(0.99))
}

fn main() {
    let secs = Duration::from_secs_f64(
        std::env::var("STEWARD_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    );
    // An Ed25519 key, as Steward signs with by default.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = b64(pair.public_key().as_ref());
    let jwks: JwkSet = serde_json::from_value(json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1", "x": x}]}))
    .unwrap();
    let mut h = Header::new(Algorithm::EdDSA);
    h.typ = Some("at+jwt".into());
    h.kid = Some("k1".into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({"iss": "https://steward.bench", "sub": "0190c0de-0000-7000-8000-000000000001",
        "aud": "https://api.bench", "exp": now + 3600, "iat": now, "nbf": now, "jti": "j",
        "client_id": "c", "scope": "docs:read docs:write", "env": "prod", "kind": "workload"});
    let token =
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ed_der(pkcs8.as_ref())).unwrap();

    let key = DecodingKey::from_ed_components(&x).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&["https://api.bench"]);
    let (base, bp50, bp99) = rate(secs, || {
        jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let auth = format!("Bearer {token}");
    let measure = |capacity: usize| {
        let mut cfg = VerifierConfig::new("https://steward.bench", "https://api.bench");
        cfg.required_scopes = vec!["docs:read".into()];
        cfg.verified_cache_capacity = capacity;
        let verifier = Verifier::with_keys(cfg, &jwks);
        rt.block_on(async {
            let mut lat = Vec::new();
            let t0 = Instant::now();
            while t0.elapsed() < secs {
                let s = Instant::now();
                verifier
                    .verify(&steward_client::Presentation {
                        authorization: Some(&auth),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                lat.push(s.elapsed().as_nanos() as u64);
            }
            let n = lat.len();
            lat.sort_unstable();
            let p = |q: f64| lat[((n - 1) as f64 * q) as usize] as f64 / 1000.0;
            (n as f64 / t0.elapsed().as_secs_f64(), p(0.5), p(0.99))
        })
    };
    // Every presentation checked from scratch (a token never seen before), then the default
    // configuration, where a workload re-presenting its token skips the signature check.
    let (sdk, p50, p99) = measure(0);
    let (warm, wp50, wp99) = measure(4096);
    println!("| measurement (1 thread) | verifications/s | p50 | p99 | vs baseline |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `jsonwebtoken::decode` EdDSA, signature + aud only (baseline, same run) | {base:.0} | {bp50:.1} µs | {bp99:.1} µs | 100 % |"
    );
    println!(
        "| `Verifier::verify`, every check, token never seen before (cache off) | {sdk:.0} | {p50:.1} µs | {p99:.1} µs | {:.0} % |",
        sdk * 100.0 / base
    );
    println!(
        "| `Verifier::verify`, the same token presented again (default cache) | {warm:.0} | {wp50:.1} µs | {wp99:.1} µs | {:.0} % |",
        warm * 100.0 / base
    );
}
