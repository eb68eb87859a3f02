//! Server-side charts as inline SVG: a horizontal bar chart and a line chart. Pure functions of
//! their data; colours come from CSS classes (no inline styles, which the CSP forbids).
//!
//! Each chart is an `<svg role="img">` labelled by its `<title>`; every bar and point carries its
//! own `<title>` (shown as a tooltip), and pages print the same numbers in a table beside it.

use std::fmt::Write as _;

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Keeps ids to `[A-Za-z0-9_-]` so a caller's id can never break out of its attribute.
fn clean_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

const BAR_WIDTH: f64 = 520.0;
const BAR_LABEL_W: f64 = 180.0;
const BAR_VALUE_W: f64 = 64.0;
const BAR_ROW: f64 = 24.0;
const BAR_H: f64 = 16.0;

/// A horizontal bar chart, one row per `(label, value)`, bars scaled to the largest value.
pub fn bar_chart(id: &str, title: &str, bars: &[(String, u64)]) -> String {
    let id = clean_id(id);
    let rows = bars.len().max(1) as f64;
    let height = rows * BAR_ROW + 8.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart bar-chart" viewBox="0 0 {BAR_WIDTH} {height}" width="{BAR_WIDTH}" height="{height}" role="img" aria-labelledby="{id}-title"><title id="{id}-title">{}</title>"#,
        escape(title)
    );
    if bars.is_empty() {
        let _ = write!(
            s,
            r#"<text class="empty" x="{}" y="20" text-anchor="middle">No data</text></svg>"#,
            BAR_WIDTH / 2.0
        );
        return s;
    }
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let span = BAR_WIDTH - BAR_LABEL_W - BAR_VALUE_W;
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = 4.0 + i as f64 * BAR_ROW;
        let w = if max == 0 || *value == 0 {
            0.0
        } else {
            (*value as f64 / max as f64 * span).max(1.0)
        };
        let label = escape(label);
        let _ = write!(
            s,
            r#"<g class="row"><text class="label" x="{lx:.1}" y="{ty:.1}" text-anchor="end">{label}</text><rect class="bar" x="{BAR_LABEL_W:.1}" y="{y:.1}" width="{w:.1}" height="{BAR_H:.1}"><title>{label}: {value}</title></rect><text class="value" x="{vx:.1}" y="{ty:.1}">{value}</text></g>"#,
            lx = BAR_LABEL_W - 8.0,
            ty = y + BAR_H - 3.0,
            vx = BAR_LABEL_W + w + 6.0,
        );
    }
    s.push_str("</svg>");
    s
}

const LINE_W: f64 = 640.0;
const LINE_H: f64 = 220.0;
const PAD_LEFT: f64 = 52.0;
const PAD_RIGHT: f64 = 16.0;
const PAD_TOP: f64 = 14.0;
const PAD_BOTTOM: f64 = 30.0;

/// The smallest "round" number (1, 2 or 5 times a power of ten) at or above `v`, at least 1.
pub fn nice_ceiling(v: u64) -> u64 {
    if v <= 1 {
        return 1;
    }
    let mut magnitude = 1u64;
    while let Some(next) = magnitude.checked_mul(10) {
        if next > v {
            break;
        }
        magnitude = next;
    }
    for m in [1u64, 2, 5, 10] {
        if let Some(c) = magnitude.checked_mul(m)
            && c >= v
        {
            return c;
        }
    }
    u64::MAX
}

/// A line chart of `points` in order, y from 0 to a round ceiling above the largest value, with
/// about six x-axis labels.
pub fn line_chart(id: &str, title: &str, points: &[(String, u64)]) -> String {
    let id = clean_id(id);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart line-chart" viewBox="0 0 {LINE_W} {LINE_H}" width="{LINE_W}" height="{LINE_H}" role="img" aria-labelledby="{id}-title"><title id="{id}-title">{}</title>"#,
        escape(title)
    );
    if points.is_empty() {
        let _ = write!(
            s,
            r#"<text class="empty" x="{}" y="{}" text-anchor="middle">No data</text></svg>"#,
            LINE_W / 2.0,
            LINE_H / 2.0
        );
        return s;
    }
    let top = nice_ceiling(points.iter().map(|(_, v)| *v).max().unwrap_or(0));
    let plot_w = LINE_W - PAD_LEFT - PAD_RIGHT;
    let plot_h = LINE_H - PAD_TOP - PAD_BOTTOM;
    let n = points.len();
    let x_of = |i: usize| {
        if n == 1 {
            PAD_LEFT + plot_w / 2.0
        } else {
            PAD_LEFT + i as f64 * plot_w / (n - 1) as f64
        }
    };
    let y_of = |v: u64| PAD_TOP + plot_h - v as f64 / top as f64 * plot_h;
    // Grid and y labels at 0, half and the top.
    for v in [0, top / 2, top] {
        let y = y_of(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{PAD_LEFT:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}"/><text class="axis" x="{lx:.1}" y="{ty:.1}" text-anchor="end">{v}</text>"#,
            x2 = LINE_W - PAD_RIGHT,
            lx = PAD_LEFT - 6.0,
            ty = y + 4.0,
        );
    }
    let every = n.div_ceil(6).max(1);
    for (i, (label, _)) in points.iter().enumerate() {
        if i % every == 0 || i == n - 1 {
            let _ = write!(
                s,
                r#"<text class="axis" x="{x:.1}" y="{y:.1}" text-anchor="middle">{}</text>"#,
                escape(label),
                x = x_of(i),
                y = LINE_H - 10.0,
            );
        }
    }
    let coords: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| format!("{:.1},{:.1}", x_of(i), y_of(*v)))
        .collect();
    let _ = write!(
        s,
        r#"<polyline class="line" fill="none" points="{}"/>"#,
        coords.join(" ")
    );
    for (i, (label, v)) in points.iter().enumerate() {
        let _ = write!(
            s,
            r#"<circle class="point" cx="{x:.1}" cy="{y:.1}" r="3"><title>{}: {v}</title></circle>"#,
            escape(label),
            x = x_of(i),
            y = y_of(*v),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    /// The `width` attribute of every bar, in order.
    fn bar_widths(svg: &str) -> Vec<f64> {
        svg.split(r#"<rect class="bar""#)
            .skip(1)
            .map(|r| {
                let w = r.split("width=\"").nth(1).unwrap();
                w[..w.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let svg = bar_chart(
            "x",
            "Identities",
            &[
                ("a".into(), 10),
                ("b".into(), 5),
                ("c".into(), 0),
                ("d".into(), 1),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(count(&svg, r#"<rect class="bar""#), 4);
        let w = bar_widths(&svg);
        let full = BAR_WIDTH - BAR_LABEL_W - BAR_VALUE_W;
        assert_eq!(w[0], full);
        assert!((w[1] - full / 2.0).abs() < 0.1, "{w:?}");
        assert_eq!(w[2], 0.0);
        // A non-zero value is always visible.
        assert!(w[3] >= 1.0);
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(r#"aria-labelledby="x-title""#));
        assert!(svg.contains("<title>b: 5</title>"));
        assert!(!svg.contains("style="), "the CSP forbids inline styles");
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn all_zero_and_empty_charts_render() {
        let svg = bar_chart("z", "t", &[("a".into(), 0), ("b".into(), 0)]);
        assert_eq!(bar_widths(&svg), vec![0.0, 0.0]);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(bar_chart("e", "t", &[]).contains("No data"));
        assert!(line_chart("e", "t", &[]).contains("No data"));
        let flat = line_chart("f", "t", &[("1".into(), 0), ("2".into(), 0)]);
        assert!(!flat.contains("NaN") && !flat.contains("inf"), "{flat}");
        let one = line_chart("o", "t", &[("1".into(), 7)]);
        assert_eq!(count(&one, "<circle"), 1);
    }

    #[test]
    fn text_and_ids_are_escaped() {
        let svg = bar_chart("a\" onload=\"x", "<script>&", &[("<b>\"'".into(), 3)]);
        assert!(!svg.contains("<script>") && !svg.contains("<b>"));
        assert!(svg.contains("&lt;script&gt;&amp;"));
        assert!(svg.contains("&lt;b&gt;&quot;&#39;"));
        assert!(!svg.contains("onload=\""));
        let line = line_chart("l", "t", &[("<x>".into(), 1)]);
        assert!(line.contains("&lt;x&gt;") && !line.contains("<x>"));
    }

    #[test]
    fn line_points_follow_the_values() {
        let pts: Vec<(String, u64)> = (0..24).map(|h| (format!("{h:02}"), h)).collect();
        let svg = line_chart("t", "Tokens", &pts);
        assert_eq!(count(&svg, "<circle"), 24);
        // The y axis tops out at a round number above the maximum (23 → 50).
        assert!(svg.contains(">50</text>"));
        // Higher values are drawn higher (smaller y).
        let ys: Vec<f64> = svg
            .split("cy=\"")
            .skip(1)
            .map(|r| r[..r.find('"').unwrap()].parse().unwrap())
            .collect();
        assert!(ys.windows(2).all(|w| w[1] < w[0]), "{ys:?}");
        // About six x labels, plus the last one.
        assert!(count(&svg, r#"class="axis" x"#) <= 3 + 7);
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(10), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(23), 50);
        assert_eq!(nice_ceiling(51), 100);
        assert_eq!(nice_ceiling(999_999), 1_000_000);
        assert!(nice_ceiling(u64::MAX) >= u64::MAX / 10);
    }
}
