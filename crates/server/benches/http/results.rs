//! Settings from the environment, where the benches write their Markdown results
//! (`target/bench-results/`), and the number formats of their tables; shared by `http` and `suite`.

use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;

/// The value of environment variable `name`, parsed, or `default` when unset or blank.
pub fn env_or<T: FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e| format!("{name}={v:?}: {e}")),
        _ => Ok(default),
    }
}

/// `target/bench-results/<file>` (honouring `CARGO_TARGET_DIR`).
pub fn results_path(file: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let target = target.canonicalize().unwrap_or(target);
    target.join("bench-results").join(file)
}

/// Milliseconds with two decimals, or `–`.
pub fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.2} ms"))
}

/// A rounded count with thousands separators.
pub fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
