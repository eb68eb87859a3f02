//! Fuzzes the token endpoint's form parsing: any body either parses or is refused with an
//! RFC 6749 error, never a panic; a parsed form never yields a repeated single-valued parameter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_server::service::tokens::Form;

fuzz_target!(|data: &[u8]| {
    if let Ok(form) = Form::parse(data) {
        for name in [
            "grant_type",
            "scope",
            "client_id",
            "client_secret",
            "client_assertion",
        ] {
            let _ = form.get(name);
        }
        let _ = form.all("resource");
        if let Some(s) = form.get("scope") {
            let _ = steward_core::scope::parse_scope_param(s);
        }
    }
});
