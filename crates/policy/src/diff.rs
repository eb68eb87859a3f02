//! A small line diff (longest common subsequence) for the audit record of a policy change.
//! Output lines start with `-` (removed), `+` (added) or ` ` (kept).

/// The line diff from `before` to `after`. Inputs above 2,000 lines each are shown as a
/// whole-text replacement instead (the table would be too large).
pub fn line_diff(before: &str, after: &str) -> Vec<String> {
    let a: Vec<&str> = if before.is_empty() {
        Vec::new()
    } else {
        before.lines().collect()
    };
    let b: Vec<&str> = if after.is_empty() {
        Vec::new()
    } else {
        after.lines().collect()
    };
    if a.len() > 2000 || b.len() > 2000 {
        return a
            .iter()
            .map(|l| format!("-{l}"))
            .chain(b.iter().map(|l| format!("+{l}")))
            .collect();
    }
    // lcs[i][j] = LCS length of a[i..] and b[j..]
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n && j < m {
        if a[i] == b[j] {
            out.push(format!(" {}", a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(format!("-{}", a[i]));
            i += 1;
        } else {
            out.push(format!("+{}", b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| format!("-{l}")));
    out.extend(b[j..].iter().map(|l| format!("+{l}")));
    out
}
