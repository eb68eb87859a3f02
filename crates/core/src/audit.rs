//! Audit events and records: what happened, who did it, to what, with which outcome.
//! The canonical byte form defined here is what the tamper-evident log hashes; it must never change silently.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

/// An event to append. Never put a secret in any field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Who acted: an identity id, `system`, or `anonymous`.
    pub actor: String,
    /// Dotted verb, e.g. `identity.create`, `token.issue`.
    pub action: String,
    /// What was acted on, e.g. `identity:<id>`, `credential:<id>`.
    pub target: Option<String>,
    /// The identity the event concerns, for filtering.
    pub identity_id: Option<Uuid>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub source: Option<String>,
    /// Structured, non-secret details (diffs, scopes, token ids).
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(
        time: OffsetDateTime,
        actor: impl Into<String>,
        action: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        Self {
            time: crate::truncate_micros(time),
            actor: actor.into(),
            action: action.into(),
            target: None,
            identity_id: None,
            outcome,
            reason: None,
            request_id: None,
            source: None,
            details: serde_json::Value::Null,
        }
    }
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = Some(t.into());
        self
    }
    pub fn identity(mut self, id: Uuid) -> Self {
        self.identity_id = Some(id);
        self
    }
    pub fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = Some(r.into());
        self
    }
    pub fn details(mut self, d: serde_json::Value) -> Self {
        self.details = d;
        self
    }
    pub fn request(mut self, request_id: Option<String>, source: Option<String>) -> Self {
        self.request_id = request_id;
        self.source = source;
        self
    }

    /// The canonical bytes hashed into the log for record `seq`: compact JSON with a fixed field
    /// order, times as integer microseconds, and object keys in `details` sorted at every depth
    /// by [`Sorted`], whatever map type serde_json was built with (a dependency may enable its
    /// `preserve_order` feature; the hash must not depend on insertion order).
    pub fn canonical_bytes(&self, seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        self.canonical_tail().write_with_seq(seq, &mut out);
        out
    }

    /// The canonical bytes without the sequence number (see [`CanonicalTail`]).
    pub fn canonical_tail(&self) -> CanonicalTail {
        self.encode().0
    }

    /// The canonical tail, and `details` as stored: JSON with object keys sorted at every depth,
    /// serialized once for both.
    pub fn encode(&self) -> (CanonicalTail, String) {
        #[derive(Serialize)]
        struct Canon<'a> {
            time_us: i64,
            actor: &'a str,
            action: &'a str,
            target: Option<&'a str>,
            identity_id: Option<Uuid>,
            outcome: &'a str,
            reason: Option<&'a str>,
            request_id: Option<&'a str>,
            source: Option<&'a str>,
        }
        let c = Canon {
            time_us: crate::to_micros(self.time),
            actor: &self.actor,
            action: &self.action,
            target: self.target.as_deref(),
            identity_id: self.identity_id,
            outcome: self.outcome.as_str(),
            reason: self.reason.as_deref(),
            request_id: self.request_id.as_deref(),
            source: self.source.as_deref(),
        };
        // Neither can fail: every map key of a `Value` is a string.
        let details = serde_json::to_string(&Sorted(&self.details)).unwrap_or_default();
        let mut tail = serde_json::to_vec(&c).unwrap_or_default();
        // `{"time_us":…,"source":…}` becomes `,"time_us":…,"source":…,"details":…}`: it continues
        // the object opened by `CANONICAL_HEAD` and the sequence number.
        if let Some(open) = tail.first_mut() {
            *open = b',';
        }
        tail.pop();
        tail.reserve(details.len() + 12);
        tail.extend_from_slice(br#","details":"#);
        tail.extend_from_slice(details.as_bytes());
        tail.push(b'}');
        (CanonicalTail(tail), details)
    }
}

/// What every record's canonical bytes start with, before the sequence number.
const CANONICAL_HEAD: &[u8] = br#"{"v":1,"seq":"#;

/// An event's canonical bytes up to its sequence number left out: the record's canonical bytes
/// are `{"v":1,"seq":`, the number in decimal, then this tail. The tail is everything costly to
/// compute (the JSON, with `details` sorted), so it can be made before the event is queued, and
/// the writer, which assigns sequence numbers one batch at a time, only joins the parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTail(Vec<u8>);

impl CanonicalTail {
    /// Replaces the contents of `out` with the canonical bytes of record `seq`.
    pub fn write_with_seq(&self, seq: u64, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.clear();
        out.reserve(CANONICAL_HEAD.len() + 20 + self.0.len());
        out.extend_from_slice(CANONICAL_HEAD);
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{seq}");
        out.extend_from_slice(&self.0);
    }
}

/// Serializes a JSON value with object keys sorted at every depth.
struct Sorted<'a>(&'a serde_json::Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut map = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    map.serialize_entry(k, &Sorted(&m[k]))?;
                }
                map.end()
            }
            serde_json::Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// A stored record: the event, its position, and its hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// RFC 6962 leaf hash of the canonical bytes (hex in JSON).
    #[serde(with = "hex32")]
    pub leaf_hash: [u8; 32],
    /// Hash chain: H(previous chain hash || leaf hash).
    #[serde(with = "hex32")]
    pub chain_hash: [u8; 32],
}

/// Hex encoding for 32-byte hashes.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn encode(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub fn decode(s: &str) -> Option<[u8; 32]> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).ok_or_else(|| D::Error::custom("expected 64 hex characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_is_stable_and_seq_bound() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let e = AuditEvent::new(t, "system", "identity.create", Outcome::Success)
            .details(serde_json::json!({"b": 1, "a": [1, 2]}));
        let a = e.canonical_bytes(7);
        assert_eq!(a, e.clone().canonical_bytes(7));
        assert_ne!(a, e.canonical_bytes(8));
        let s = String::from_utf8(a).unwrap();
        assert!(
            s.starts_with(r#"{"v":1,"seq":7,"time_us":1700000000000000,"actor":"system""#),
            "{s}"
        );
        assert!(s.contains(r#""details":{"a":[1,2],"b":1}"#), "{s}");
        // Nested objects are sorted too, whatever the insertion order.
        let nested = AuditEvent::new(t, "system", "x", Outcome::Success)
            .details(serde_json::json!({"z": {"y": 1, "x": [{"b": 0, "a": 0}]}, "m": null}));
        let n = String::from_utf8(nested.canonical_bytes(1)).unwrap();
        assert!(
            n.contains(r#""details":{"m":null,"z":{"x":[{"a":0,"b":0}],"y":1}}"#),
            "{n}"
        );
    }

    #[test]
    fn the_tail_joined_with_a_seq_is_the_canonical_form() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let e = AuditEvent::new(t, "system", "token.issue", Outcome::Denied)
            .target("token:x")
            .reason("a \"quoted\" reason")
            .details(serde_json::json!({"b": [1, {"d": 0, "c": 1}], "a": "x"}));
        let expected = concat!(
            r#"{"v":1,"seq":18446744073709551615,"time_us":1700000000000000,"actor":"system","#,
            r#""action":"token.issue","target":"token:x","identity_id":null,"outcome":"denied","#,
            r#""reason":"a \"quoted\" reason","request_id":null,"source":null,"#,
            r#""details":{"a":"x","b":[1,{"c":1,"d":0}]}}"#
        );
        assert_eq!(
            String::from_utf8(e.canonical_bytes(u64::MAX)).unwrap(),
            expected
        );
        // One buffer reused for several records holds exactly the last one.
        let tail = e.canonical_tail();
        let mut buf = b"left over from a longer record".repeat(20);
        tail.write_with_seq(u64::MAX, &mut buf);
        assert_eq!(buf, expected.as_bytes());
        tail.write_with_seq(0, &mut buf);
        assert_eq!(buf, e.canonical_bytes(0));
        assert!(
            String::from_utf8(buf)
                .unwrap()
                .starts_with(r#"{"v":1,"seq":0,"time_us""#)
        );
        // Details as stored are the canonical ones, and read back as the same value.
        let (_, details) = e.encode();
        assert_eq!(details, r#"{"a":"x","b":[1,{"c":1,"d":0}]}"#);
        let back: serde_json::Value = serde_json::from_str(&details).unwrap();
        assert_eq!(back, e.details);
    }

    #[test]
    fn hex_round_trip() {
        let h = [0xabu8; 32];
        assert_eq!(hex32::decode(&hex32::encode(&h)), Some(h));
        assert_eq!(hex32::decode("zz"), None);
    }
}
