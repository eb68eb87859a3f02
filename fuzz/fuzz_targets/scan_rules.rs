//! Fuzzes the secret scanner with a user rules file (`steward scan --rules FILE`, TOML) and the
//! content it scans, separated by a 0xFF byte (never valid in UTF-8 TOML). Never panics, whatever
//! the rules; every hit lies inside the content, at a real line and column.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steward_scan::{RuleSet, Scanner};

fn builtin() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| Scanner::new(RuleSet::builtin().expect("built-in rules compile")))
}

fn check_hits(scanner: &Scanner, content: &[u8]) {
    let Some(hits) = scanner.scan_bytes("src/fuzz.txt", content) else {
        return; // binary
    };
    let lines = content.split(|&b| b == b'\n').count() as u64;
    for h in hits {
        assert!(h.rule < scanner.rules().rules.len());
        assert!(h.line >= 1 && h.line <= lines, "line {} of {lines}", h.line);
        assert!(h.column >= 1);
        assert!(!h.secret.is_empty());
        if std::str::from_utf8(content).is_ok() {
            let text = String::from_utf8_lossy(content);
            assert!(text.contains(&h.secret), "a hit that is not in the content");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (rules, content) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    check_hits(builtin(), content);
    let Ok(rules) = std::str::from_utf8(rules) else {
        return;
    };
    if rules.trim().is_empty() {
        return;
    }
    if let Ok(set) = RuleSet::with_extra(rules, "fuzz.toml") {
        check_hits(&Scanner::new(set), content);
    }
});
