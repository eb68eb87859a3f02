//! The matching engine: a keyword automaton finds the few places worth a look, and only there
//! the rules' regexes, entropy gates, checksums and allow-lists run. Streams with bounded memory.

use std::collections::HashSet;
use std::io::{self, Read};

use memchr::{memchr, memmem, memrchr};
use regex::bytes::Captures;

use crate::rules::{Rule, RuleSet};
use crate::validate;

/// Target size of one read from a file or blob.
pub const CHUNK: usize = 1 << 20;
/// Bytes kept beyond a region so that multi-line rules see whole blocks; also the longest
/// window a multi-line rule can match.
pub const LOOKAHEAD: usize = 16 << 10;
/// Half-width of the window examined around a keyword on a very long line.
const LINE_WINDOW: usize = 2048;
/// Bytes examined for a NUL to decide that content is binary (as git and ripgrep do).
const BINARY_PROBE: usize = 8192;
/// Longest single-line secret reported (longer matches are data, not credentials).
const MAX_SECRET: usize = 1024;
/// The inline marker that suppresses every finding on its line.
const ALLOW_MARKER: &[u8] = b"steward:allow";

/// A raw match: which rule, where (1-based line and column), and the secret itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: usize,
    pub line: u64,
    pub column: u64,
    pub secret: String,
}

impl std::fmt::Debug for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hit")
            .field("rule", &self.rule)
            .field("line", &self.line)
            .field("column", &self.column)
            .field("secret", &steward_core::apikey::redact(&self.secret))
            .finish()
    }
}

/// Is this content binary (a NUL byte near the start)?
pub fn looks_binary(head: &[u8]) -> bool {
    memchr(0, &head[..head.len().min(BINARY_PROBE)]).is_some()
}

/// Counts lines lazily: only content that precedes a finding is ever counted.
struct LineCounter {
    /// Byte offset in the current buffer up to which `lines` is known.
    pos: usize,
    /// Newlines before `pos`, including those of earlier chunks.
    lines: u64,
}

impl LineCounter {
    fn line_at(&mut self, buf: &[u8], p: usize) -> u64 {
        if p >= self.pos {
            self.lines += count_newlines(&buf[self.pos..p]);
        } else {
            self.lines -= count_newlines(&buf[p..self.pos]);
        }
        self.pos = p;
        self.lines + 1
    }
}

fn count_newlines(b: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', b).count() as u64
}

/// Per-scan state of one file or blob.
struct FileState<'r> {
    rules: &'r RuleSet,
    /// Rules switched off for this path by their own allow-list.
    disabled: Vec<bool>,
    /// (rule, absolute offset) already reported, so overlapping windows never report twice.
    seen: HashSet<(usize, u64)>,
    /// Scratch: rules triggered in the current window.
    triggered: Vec<bool>,
    hits: Vec<Hit>,
}

/// The scanner: a compiled rule set. Each worker thread uses its own clone, so regex match
/// caches are never contended.
#[derive(Debug, Clone)]
pub struct Scanner {
    rules: RuleSet,
}

impl Scanner {
    pub fn new(rules: RuleSet) -> Self {
        Self { rules }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Scans an in-memory buffer. `None` when it is binary.
    pub fn scan_bytes(&self, path: &str, data: &[u8]) -> Option<Vec<Hit>> {
        let mut buf = Vec::new();
        self.scan_reader(path, data, &mut buf)
            .unwrap_or_default()
            .map(|(hits, _)| hits)
    }

    /// Streams `reader` through the rules in chunks of about [`CHUNK`] bytes, reusing `buf`
    /// (memory stays bounded whatever the size). `path` (relative to the scan root) is matched
    /// by the rules' own path allow-lists. Returns the hits and the bytes read, or `None` when
    /// the content is binary.
    pub fn scan_reader<R: Read>(
        &self,
        path: &str,
        mut reader: R,
        buf: &mut Vec<u8>,
    ) -> io::Result<Option<(Vec<Hit>, u64)>> {
        let rules = &self.rules;
        let mut st = FileState {
            rules,
            disabled: rules
                .rules
                .iter()
                .map(|r| {
                    r.allow_paths
                        .as_ref()
                        .is_some_and(|s| s.is_match(path.as_bytes()))
                })
                .collect(),
            seen: HashSet::new(),
            triggered: vec![false; rules.rules.len()],
            hits: Vec::new(),
        };
        // One zeroed allocation per buffer: later reads overwrite it without clearing.
        if buf.len() != CHUNK + LOOKAHEAD {
            buf.clear();
            buf.resize(CHUNK + LOOKAHEAD, 0);
        }
        let mut filled = 0;
        let mut consumed_bytes: u64 = 0;
        let mut counter = LineCounter { pos: 0, lines: 0 };
        let mut first = true;
        loop {
            let mut eof = false;
            while filled < buf.len() {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let data = &buf[..filled];
            if first {
                if looks_binary(data) {
                    return Ok(None);
                }
                first = false;
            }
            let region_end = if eof {
                data.len()
            } else {
                let limit = data.len() - LOOKAHEAD;
                memrchr(b'\n', &data[..limit]).map_or(limit, |p| p + 1)
            };
            st.scan_region(data, region_end, consumed_bytes, &mut counter);
            if eof {
                consumed_bytes += data.len() as u64;
                break;
            }
            // Carry the unscanned tail to the front of the buffer.
            let lines_in_region = counter.lines + count_newlines(&data[counter.pos..region_end]);
            counter = LineCounter {
                pos: 0,
                lines: lines_in_region,
            };
            consumed_bytes += region_end as u64;
            buf.copy_within(region_end..filled, 0);
            filled -= region_end;
        }
        Ok(Some((st.hits, consumed_bytes)))
    }
}

impl FileState<'_> {
    /// Scans keyword windows that start in `buf[..region_end]`; windows of multi-line rules may
    /// read on to the end of `buf`.
    fn scan_region(&mut self, buf: &[u8], region_end: usize, base: u64, counter: &mut LineCounter) {
        let rules = self.rules;
        if !rules.unconditional.is_empty() {
            self.triggered.iter_mut().for_each(|t| *t = false);
            for &r in &rules.unconditional {
                self.triggered[r] = true;
            }
            self.run_window(buf, 0, region_end, region_end, base, counter);
        }
        // Hits on one line (or within LINE_WINDOW of each other) share one window; the window
        // runs the rules of every keyword in it.
        let mut window: Option<(usize, usize)> = None;
        for m in rules.prefilter.find_iter(&buf[..region_end]) {
            let p = m.start();
            if let Some((ws, we)) = window {
                if p < we {
                    continue;
                }
                self.flush(buf, ws, we, region_end, base, counter);
            }
            let ls = memrchr(b'\n', &buf[..p]).map_or(0, |i| i + 1);
            let le = memchr(b'\n', &buf[p..region_end]).map_or(region_end, |i| p + i);
            window = Some((
                ls.max(p.saturating_sub(LINE_WINDOW)),
                le.min(p + LINE_WINDOW),
            ));
        }
        if let Some((ws, we)) = window {
            self.flush(buf, ws, we, region_end, base, counter);
        }
    }

    fn flush(
        &mut self,
        buf: &[u8],
        ws: usize,
        we: usize,
        region_end: usize,
        base: u64,
        counter: &mut LineCounter,
    ) {
        let rules = self.rules;
        self.triggered.iter_mut().for_each(|t| *t = false);
        let mut any = false;
        for m in rules.window_keywords.find_overlapping_iter(&buf[ws..we]) {
            for &r in &rules.keyword_rules[m.pattern().as_usize()] {
                if !self.disabled[r] {
                    self.triggered[r] = true;
                    any = true;
                }
            }
        }
        if any {
            self.run_window(buf, ws, we, region_end, base, counter);
        }
    }

    /// Runs every triggered rule over `buf[ws..we]` (multi-line rules: from the line start on,
    /// up to [`LOOKAHEAD`] bytes), specific rules first.
    fn run_window(
        &mut self,
        buf: &[u8],
        ws: usize,
        we: usize,
        region_end: usize,
        base: u64,
        counter: &mut LineCounter,
    ) {
        let rules = self.rules;
        // Spans claimed by specific rules (valid or not): generic rules yield to them.
        let mut claimed: Vec<(usize, usize)> = Vec::new();
        for &ri in &rules.order {
            if !self.triggered[ri] {
                continue;
            }
            let rule = &rules.rules[ri];
            let (start, end) = if rule.multiline {
                let ls = memrchr(b'\n', &buf[..ws]).map_or(0, |i| i + 1);
                (ls, (ls + LOOKAHEAD).min(buf.len()).max(we))
            } else {
                (ws, we)
            };
            for caps in rule.regex.captures_iter(&buf[start..end]) {
                let Some(whole) = caps.get(0) else { continue };
                let Some(secret) = secret_of(rule, &caps) else {
                    continue;
                };
                let (s0, s1) = (start + secret.start(), start + secret.end());
                let at = if rule.multiline {
                    start + whole.start()
                } else {
                    s0
                };
                if at >= region_end {
                    continue;
                }
                if rule.generic {
                    if claimed.iter().any(|&(a, b)| s0 < b && a < s1) {
                        continue;
                    }
                } else {
                    claimed.push((s0, s1));
                }
                let raw = String::from_utf8_lossy(secret.as_bytes());
                let text = raw.trim();
                if !accept(rules, rule, text) {
                    continue;
                }
                let ls = memrchr(b'\n', &buf[..at]).map_or(0, |i| i + 1);
                let le = memchr(b'\n', &buf[at..]).map_or(buf.len(), |i| at + i);
                if memmem::find(&buf[ls..le], ALLOW_MARKER).is_some() {
                    continue;
                }
                if !self.seen.insert((ri, base + at as u64)) {
                    continue;
                }
                let column = 1 + buf[ls..at].iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64;
                self.hits.push(Hit {
                    rule: ri,
                    line: counter.line_at(buf, at),
                    column,
                    secret: text.to_owned(),
                });
            }
        }
    }
}

/// The capture holding the secret: `secret_group`, else the first group that took part.
fn secret_of<'h>(rule: &Rule, caps: &Captures<'h>) -> Option<regex::bytes::Match<'h>> {
    match rule.secret_group {
        Some(g) => caps.get(g),
        None if caps.len() > 1 => (1..caps.len()).find_map(|g| caps.get(g)),
        None => caps.get(0),
    }
}

/// Entropy gate, checksum and allow-lists.
fn accept(rules: &RuleSet, rule: &Rule, secret: &str) -> bool {
    if secret.is_empty() || (!rule.multiline && secret.len() > MAX_SECRET) {
        return false;
    }
    if rule.min_entropy > 0.0 && validate::shannon_entropy(secret.as_bytes()) < rule.min_entropy {
        return false;
    }
    if let Some(v) = rule.validate
        && !validate::check(v, secret)
    {
        return false;
    }
    let allowed = |set: &Option<regex::bytes::RegexSet>| {
        set.as_ref().is_some_and(|s| s.is_match(secret.as_bytes()))
    };
    !allowed(&rules.allow_patterns) && !allowed(&rule.allow_patterns)
}
