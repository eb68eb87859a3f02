//! Fuzzes trust-policy validation and rule evaluation: arbitrary policy JSON (a whole policy, or
//! just its `allow` rules) and arbitrary claims JSON, separated by the first newline. Evaluation
//! never panics, the fast path and the explanation agree, and an empty claim set matches nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use steward_core::trust::{TrustPolicy, TrustPolicySpec};

fn base() -> Value {
    json!({
        "name": "fuzz", "issuer": "https://issuer.example", "jwks_uri": "https://issuer.example/jwks",
        "audiences": ["https://steward.example"], "identity": "0190a0b0-0000-7000-8000-000000000001",
        "allow": [],
    })
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (policy_bytes, rest) = data.split_at(split);
    let claims_bytes = rest.get(1..).unwrap_or(&[]);
    let Ok(policy) = serde_json::from_slice::<Value>(policy_bytes) else {
        return;
    };
    let doc = match policy {
        Value::Array(rules) => {
            let mut b = base();
            b["allow"] = Value::Array(rules);
            b
        }
        other => other,
    };
    let Ok(spec) = serde_json::from_value::<TrustPolicySpec>(doc) else {
        return;
    };
    let Ok(p) = TrustPolicy::compile(spec) else {
        return;
    };
    // A compiled policy's spec re-serializes and compiles again.
    let again = serde_json::to_value(&p.spec).expect("spec serializes");
    let again: TrustPolicySpec = serde_json::from_value(again).expect("spec round-trips");
    TrustPolicy::compile(again).expect("a compiled policy compiles again");

    let empty = Map::new();
    assert!(p.evaluate_rules(&empty).is_err(), "an empty claim set must match no rule");
    let claims = match serde_json::from_slice::<Value>(claims_bytes) {
        Ok(Value::Object(m)) => m,
        _ => return,
    };
    let fast = p.evaluate_rules(&claims);
    let explained = p.explain_rules(&claims);
    let first = explained.iter().find(|r| r.matched).map(|r| r.rule);
    assert_eq!(fast.as_ref().ok().copied(), first, "fast path and explanation disagree");
    let _ = p.check_preset(&claims);
    let _ = p.check_registered(&claims, 1_700_000_000, 60);
});
