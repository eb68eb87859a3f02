//! The done-when corpus: a real git repository with secrets planted in files and in history,
//! look-alikes with bad checksums and low-entropy decoys; the scan must report exactly the plants.
// In tests a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use steward_core::apikey::{ApiKey, KeyType, redact};
use steward_scan::report::{self, Format};
use steward_scan::validate::github_with_checksum;
use steward_scan::{Finding, Progress, RuleSet, ScanOptions, Scanner, scan};

/// Deterministic xorshift generator: the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
    fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }
}

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn steward_key(rng: &mut Rng) -> String {
    ApiKey::generate(KeyType::ClientSecret, &mut |b: &mut [u8]| rng.fill(b))
        .expose_secret()
        .to_owned()
}

/// Changes one character of the random part: same shape, wrong checksum.
fn break_checksum(key: &str, at: usize) -> String {
    let mut b = key.as_bytes().to_vec();
    b[at] = if b[at] == b'a' { b'b' } else { b'a' };
    String::from_utf8(b).unwrap()
}

fn ghp(rng: &mut Rng, prefix: &str) -> String {
    github_with_checksum(&format!("{prefix}{}", rng.pick(B62, 30)))
}

fn github_pat(rng: &mut Rng) -> String {
    github_with_checksum(&format!(
        "github_pat_{}_{}",
        rng.pick(B62, 22),
        rng.pick(B62, 53)
    ))
}

fn pem(rng: &mut Rng) -> String {
    let mut s = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
    for _ in 0..20 {
        s.push_str(&rng.pick(B64, 64));
        s.push('\n');
    }
    s.push_str(&rng.pick(B64, 40));
    s.push_str("==\n-----END RSA PRIVATE KEY-----\n");
    s
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn git(root: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "-c",
            "user.name=Corpus",
            "-c",
            "user.email=corpus@example.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn git_out(root: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// (path, line, rule, full secret) of one expected finding.
type Expect = (String, u64, &'static str, String);

struct Corpus {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Findings in the working tree (the default scan).
    files: Vec<Expect>,
    /// Findings that only history holds (scan --git).
    history: Vec<Expect>,
    /// Found only with --no-ignore.
    ignored: Vec<Expect>,
    /// Every look-alike and decoy value: none may be reported.
    decoys: Vec<String>,
    /// The commit that added the deleted secrets.
    first_commit: String,
}

fn build() -> Corpus {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).unwrap();
    let r = root.as_path();
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    git(r, &["init", "-q"]);

    // ---------- commit 1: secrets that will be deleted or replaced later ----------
    let old_key = steward_key(&mut rng);
    let old_ghp = ghp(&mut rng, "ghp_");
    let old_akia = format!("AKIA{}", rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
    let old_bad = break_checksum(&steward_key(&mut rng), 12);
    write(
        r,
        "old/creds.txt",
        format!("# temporary\nclient_secret: {old_key}\n").as_bytes(),
    );
    write(
        r,
        "src/main.py",
        format!("import os\n\nGITHUB_TOKEN = \"{old_ghp}\"\n").as_bytes(),
    );
    write(r, "old/aws.txt", format!("key id {old_akia}\n").as_bytes());
    write(r, "old/lookalike.txt", format!("k={old_bad}\n").as_bytes());
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "first"]);
    let first_commit = git_out(r, &["rev-parse", "HEAD"]);

    // A secret on another branch only.
    git(r, &["checkout", "-q", "-b", "feature"]);
    let branch_token = ghp(&mut rng, "ghs_");
    write(
        r,
        "feature/ci.sh",
        format!("#!/bin/sh\nexport GH={branch_token}\n").as_bytes(),
    );
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "feature"]);
    git(r, &["checkout", "-q", "main"]);

    // ---------- commit 2: the current tree ----------
    std::fs::remove_dir_all(r.join("old")).unwrap();
    let key1 = steward_key(&mut rng);
    let key2 = steward_key(&mut rng);
    let key_big = steward_key(&mut rng);
    let ghp1 = ghp(&mut rng, "ghp_");
    let gho1 = ghp(&mut rng, "gho_");
    let pat1 = github_pat(&mut rng);
    let akia = format!("AKIA{}", rng.pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
    let aws_secret = rng.pick(B64, 40);
    let slack = format!(
        "xoxb-{}-{}-{}",
        rng.pick(b"0123456789", 12),
        rng.pick(b"0123456789", 13),
        rng.pick(B62, 24)
    );
    // A fixture, not a credential: steward:allow keeps `steward scan .` of this repository clean.
    let password = "Xq7!kP2#vL9@mN4$zR".to_owned(); // steward:allow
    let private_key = pem(&mut rng);
    let pem_body = private_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    let allowed_key = steward_key(&mut rng);
    let ignored_key = steward_key(&mut rng);
    let node_key = steward_key(&mut rng);
    let binary_key = steward_key(&mut rng);

    write(
        r,
        "config/app.env",
        format!(
            "# app settings\nSTEWARD_URL=https://steward.internal\nSTEWARD_CLIENT_SECRET={key1}\n"
        )
        .as_bytes(),
    );
    write(r, ".env", format!("API_TOKEN='{key2}'\n").as_bytes());
    write(
        r,
        "src/main.py",
        format!("import os\n\nGITHUB_TOKEN = \"{ghp1}\"\noauth = {{'token': '{gho1}'}}\n")
            .as_bytes(),
    );
    write(r, "ci.yml", format!("env:\n  GH_PAT: {pat1}\n").as_bytes());
    write(r, "deploy/id_rsa", format!("\n{private_key}").as_bytes());
    write(
        r,
        "aws/credentials",
        format!("[default]\naws_access_key_id = {akia}\naws_secret_access_key = {aws_secret}\n")
            .as_bytes(),
    );
    write(
        r,
        "web/slack.js",
        format!("const hook = \"{slack}\";\n").as_bytes(),
    );
    write(
        r,
        "settings.yaml",
        format!("database:\n  host: db\n  password: \"{password}\"\n").as_bytes(),
    );
    write(
        r,
        "docs/allowed.md",
        format!("Example: `{allowed_key}` # steward:allow\n").as_bytes(),
    );
    // A large file: the key sits right around the first chunk boundary, another near the end.
    let mut big = String::new();
    let mut line_no = 0u64;
    let mut big_lines = Vec::new();
    while big.len() < 3 * 1024 * 1024 {
        line_no += 1;
        if big.len() > (1 << 20) - 200 && big_lines.is_empty() {
            big.push_str(&format!("let credential = \"{key_big}\";\n"));
            big_lines.push(line_no);
            continue;
        }
        big.push_str(&format!(
            "fn f{line_no}(x: u64) -> u64 {{ x.wrapping_mul({}) }} // token budget\n",
            rng.next() % 1000
        ));
    }
    write(r, "src/big.rs", big.as_bytes());

    // Decoys and look-alikes: none of these may be reported.
    let bad_key = break_checksum(&steward_key(&mut rng), 20);
    let bad_ghp = break_checksum(&ghp(&mut rng, "ghp_"), 9);
    let bad_pat = break_checksum(&github_pat(&mut rng), 40);
    let settings_ref = "secret_key = settings.SECRET_KEY";
    let decoys_text = format!(
        "stw key look-alike {bad_key}\n\
         GITHUB_TOKEN={bad_ghp}\n\
         pat: {bad_pat}\n\
         password = \"aaaaaaaaaaaa\"\n\
         password = \"password\"\n\
         token = get_token()\n\
         secret: ${{SECRET_FROM_ENV}}\n\
         api_key = os.environ[\"API_KEY\"]\n\
         {settings_ref}\n\
         aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n\
         aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n\
         slack = xoxb-00000000-xxxxxxxxxxxx\n\
         AKIAAAAAAAAAAAAAAAAA\n\
         stw_k_short\n\
         password_hint = \"ask-the-team\"\n\
         -----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n"
    );
    write(r, "decoys/lookalikes.txt", decoys_text.as_bytes());
    // Ignored, allow-listed and binary places.
    write(r, ".gitignore", b"build/\n");
    write(
        r,
        "build/out.txt",
        format!("secret={ignored_key}\n").as_bytes(),
    );
    write(
        r,
        "node_modules/pkg/index.js",
        format!("module.exports = '{node_key}'\n").as_bytes(),
    );
    let mut bin = vec![0u8, 1, 2, 3, 0, 159, 146, 150];
    bin.extend_from_slice(format!("\n{binary_key}\n").as_bytes());
    write(r, "assets/blob.bin", &bin);
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "second"]);

    // Decoys in history too: committed, then removed.
    let hist_bad = break_checksum(&steward_key(&mut rng), 30);
    write(r, "tmp/decoy.txt", format!("k={hist_bad}\n").as_bytes());
    git(r, &["add", "-A"]);
    git(r, &["commit", "-q", "-m", "decoy"]);
    git(r, &["rm", "-q", "-r", "tmp"]);
    git(r, &["commit", "-q", "-m", "remove decoy"]);

    // An uncommitted working-tree secret is still found by the file scan.
    let uncommitted = steward_key(&mut rng);
    write(
        r,
        "scratch.txt",
        format!("note\n{uncommitted}\n").as_bytes(),
    );

    let e = |p: &str, l: u64, rule: &'static str, s: &str| (p.to_owned(), l, rule, s.to_owned());
    let files = vec![
        e("config/app.env", 3, "steward-api-key", &key1),
        e(".env", 1, "steward-api-key", &key2),
        e("src/main.py", 3, "github-token", &ghp1),
        e("src/main.py", 4, "github-token", &gho1),
        e("ci.yml", 2, "github-fine-grained-pat", &pat1),
        e("deploy/id_rsa", 2, "private-key", &pem_body),
        e("aws/credentials", 2, "aws-access-key-id", &akia),
        e("aws/credentials", 3, "aws-secret-access-key", &aws_secret),
        e("web/slack.js", 1, "slack-token", &slack),
        e("settings.yaml", 3, "generic-secret-assignment", &password),
        e("src/big.rs", big_lines[0], "steward-api-key", &key_big),
        e("scratch.txt", 2, "steward-api-key", &uncommitted),
    ];
    let history = vec![
        e("old/creds.txt", 2, "steward-api-key", &old_key),
        e("src/main.py", 3, "github-token", &old_ghp),
        e("old/aws.txt", 1, "aws-access-key-id", &old_akia),
        e("feature/ci.sh", 2, "github-token", &branch_token),
    ];
    let ignored = vec![e("build/out.txt", 1, "steward-api-key", &ignored_key)];
    let decoys = vec![
        bad_key,
        bad_ghp,
        bad_pat,
        old_bad,
        hist_bad,
        allowed_key,
        node_key,
        binary_key,
        "AKIAIOSFODNN7EXAMPLE".into(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
    ];
    Corpus {
        _dir: dir,
        root,
        files,
        history,
        ignored,
        decoys,
        first_commit,
    }
}

fn run(c: &Corpus, opts: ScanOptions) -> Vec<Finding> {
    let scanner = Scanner::new(RuleSet::builtin().unwrap());
    let out = scan(
        &scanner,
        std::slice::from_ref(&c.root),
        &opts,
        &Progress::default(),
    )
    .unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    out.findings
}

fn rel(c: &Corpus, f: &Finding) -> String {
    let p = Path::new(&f.path);
    p.strip_prefix(&c.root)
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_else(|_| f.path.clone())
}

/// (path, line, rule, redacted) of what was found vs what was planted.
fn check(c: &Corpus, found: &[Finding], expected: &[&Expect]) {
    let got: BTreeSet<(String, u64, String, String)> = found
        .iter()
        .map(|f| (rel(c, f), f.line, f.rule.clone(), f.secret.clone()))
        .collect();
    let want: BTreeSet<(String, u64, String, String)> = expected
        .iter()
        .map(|(p, l, r, s)| (p.clone(), *l, (*r).to_owned(), redact(s)))
        .collect();
    assert_eq!(got.len(), found.len(), "duplicate findings: {found:#?}");
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nextra: {extra:#?}"
    );
    // Every planted secret found in full (not only its redaction), no decoy anywhere.
    for (p, _, r, s) in expected {
        assert!(
            found.iter().any(|f| f.reveal() == s && rel(c, f) == *p),
            "{p} {r}"
        );
    }
    for d in &c.decoys {
        assert!(
            !found.iter().any(|f| f.reveal().contains(d.as_str())),
            "decoy reported: {}",
            redact(d)
        );
    }
}

#[test]
fn working_tree_yields_exactly_the_planted_secrets() {
    let c = build();
    let found = run(&c, ScanOptions::default());
    check(&c, &found, &c.files.iter().collect::<Vec<_>>());
    // Columns are 1-based code points: `STEWARD_CLIENT_SECRET=` is 22 characters.
    let app = found
        .iter()
        .find(|f| f.path.ends_with("config/app.env"))
        .unwrap();
    assert_eq!(app.column, 23);
}

#[test]
fn history_adds_deleted_and_replaced_secrets_once() {
    let c = build();
    let found = run(
        &c,
        ScanOptions {
            git_history: true,
            ..Default::default()
        },
    );
    let all: Vec<&Expect> = c.files.iter().chain(c.history.iter()).collect();
    check(&c, &found, &all);
    let old = found
        .iter()
        .find(|f| f.path == "old/creds.txt")
        .expect("deleted secret found in history");
    assert_eq!(old.commit.as_deref(), Some(c.first_commit.as_str()));
    assert!(old.blob.is_some());
    // Committed secrets still present in the tree are reported once, at their working-tree path.
    assert_eq!(
        found
            .iter()
            .filter(|f| f.rule == "steward-api-key" && rel(&c, f) == "config/app.env")
            .count(),
        1
    );
}

#[test]
fn no_ignore_scans_ignored_files() {
    let c = build();
    let found = run(
        &c,
        ScanOptions {
            no_ignore: true,
            ..Default::default()
        },
    );
    let all: Vec<&Expect> = c.files.iter().chain(c.ignored.iter()).collect();
    check(&c, &found, &all);
}

#[test]
fn reports_never_contain_a_full_secret() {
    let c = build();
    let found = run(
        &c,
        ScanOptions {
            git_history: true,
            no_ignore: true,
            ..Default::default()
        },
    );
    let rules = RuleSet::builtin().unwrap();
    for format in [Format::Text, Format::Json, Format::Sarif] {
        let mut out = Vec::new();
        report::write(&mut out, format, &rules, &found, &Default::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        for f in &found {
            assert!(text.contains(&f.secret), "{format:?} lacks {}", f.secret);
            assert!(!text.contains(f.reveal()), "{format:?} leaks {}", f.rule);
        }
        assert!(!format!("{found:?}").contains(found[0].reveal()));
    }
    // SARIF 2.1.0 structure: version, driver rules, one result per finding with a location.
    let sarif = report::sarif(&rules, &found);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "steward-scan");
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), found.len());
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(run["tool"]["driver"]["rules"][idx]["id"], r["ruleId"]);
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(loc["artifactLocation"]["uri"].as_str().unwrap().len() > 1);
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
    }
}

#[test]
fn user_rules_extend_the_defaults() {
    let c = build();
    let extra = r#"
[allowlist]
paths = ['''^.*settings\.yaml$''']

[[rule]]
id = "corpus-internal-token"
description = "Internal corpus token"
regex = '''(itk_[0-9a-f]{32})'''
keywords = ["itk_"]
min_entropy = 3.0
severity = "low"
"#;
    let mut rng = Rng(42);
    let itk = format!("itk_{}", rng.pick(b"0123456789abcdef", 32));
    write(&c.root, "internal.cfg", format!("x = {itk}\n").as_bytes());
    let scanner = Scanner::new(RuleSet::with_extra(extra, "extra.toml").unwrap());
    let out = scan(
        &scanner,
        std::slice::from_ref(&c.root),
        &ScanOptions::default(),
        &Progress::default(),
    )
    .unwrap();
    assert!(
        out.findings
            .iter()
            .any(|f| f.rule == "corpus-internal-token" && f.reveal() == itk)
    );
    assert!(
        !out.findings
            .iter()
            .any(|f| f.path.ends_with("settings.yaml"))
    );
    assert!(RuleSet::with_extra("[[rule]]\nid='x'\n", "bad.toml").is_err());
    assert!(
        RuleSet::with_extra("[[rule]]\nid='x'\ndescription='d'\nregex='('\n", "bad.toml").is_err()
    );
}
