//! Fuzzes the policy decision point with operator and resource-server input: Cedar policy text
//! (`POST /v1/policies`) and an authorize request (`POST /v1/authorize`), separated by a NUL byte.
//! Never panics; a policy that passes the check compiles; and no policy can lift the guard rails:
//! an allowed request is in the principal's environment (or excepted) and holds one of the
//! action's scopes.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use steward_policy::{ActionDecl, AttrType, Base, PolicySource, Request, ResourceTypeDecl, SchemaConfig};

fn base() -> &'static Arc<Base> {
    static BASE: OnceLock<Arc<Base>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut cfg = SchemaConfig::default();
        cfg.resource_types.insert(
            "Document".into(),
            ResourceTypeDecl {
                attributes: BTreeMap::from([
                    ("owner_team".into(), AttrType::String),
                    ("tags".into(), AttrType::StringSet),
                ]),
            },
        );
        cfg.actions.insert(
            "docs:read".into(),
            ActionDecl {
                resource_types: vec!["Document".into()],
                scopes: vec!["docs:read".into(), "docs:admin".into()],
            },
        );
        Base::new(cfg).expect("the fuzz schema is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let (policy, request) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(policy) = std::str::from_utf8(policy) else {
        return;
    };
    let base = base();
    let engine = match base.check("fuzz", policy) {
        Ok(_) => base
            .compile(&[PolicySource::new("fuzz", policy)])
            .expect("a policy that passes the check compiles"),
        Err(problems) => {
            assert!(!problems.is_empty(), "a refused policy says why");
            return;
        }
    };
    let Ok(req) = serde_json::from_slice::<Request>(request) else {
        return;
    };
    let d = engine.evaluate(&req);
    if d.allow {
        assert!(d.errors.is_empty(), "{d:?}");
        assert!(!d.policies.is_empty(), "an allow names its policies: {d:?}");
        let p = &req.principal;
        let env_ok = req.resource.attributes.get("env").and_then(|v| v.as_str()) == Some(p.env.as_str())
            || p.exceptions.iter().any(|e| e == steward_policy::ENV_ISOLATION);
        assert!(env_ok, "environment isolation was lifted: {req:?}");
        // The scope cap has no exception: an allow always holds one of the action's scopes.
        let scoped = base
            .config()
            .required_scopes(&req.action)
            .is_some_and(|need| need.iter().any(|s| p.scopes.iter().any(|g| g == s)));
        assert!(scoped, "the scope cap was lifted: {req:?}");
    }
});
