//! timeline.svg, drawn by hand: ok/info/fail ops per second as bars, p50 and
//! p99 latency of successful ops as lines on a log scale, fault windows
//! shaded and labelled.

use std::fmt::Write as _;

use crate::report::{Report, BUCKET_US};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 60.0;
const TOP: f64 = 40.0;
/// Height of each of the two panels (throughput, latency).
const PANEL: f64 = 180.0;
const GAP: f64 = 40.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The SVG document for `report`.
pub fn timeline(report: &Report) -> String {
    let buckets = &report.timeline;
    let n = buckets.len().max(1) as f64;
    let plot = WIDTH - LEFT - RIGHT;
    let x_of = |seconds: f64| LEFT + plot * seconds / n;
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18" font-size="14">{} seed {} — {:?}</text>"#,
        escape(&report.scenario),
        report.seed,
        report.verdict
    );
    // Fault windows across both panels.
    for (i, f) in report.faults.iter().enumerate() {
        let x0 = x_of(f.start_us as f64 / BUCKET_US as f64);
        let x1 = x_of(f.end_us as f64 / BUCKET_US as f64);
        let _ = writeln!(
            s,
            r##"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#f4a582" fill-opacity="0.35"/>"##,
            (x1 - x0).max(1.0),
            2.0 * PANEL + GAP
        );
        let y = TOP + 10.0 + 12.0 * (i % 3) as f64;
        let _ = writeln!(s, r##"<text x="{:.1}" y="{y}" fill="#b2182b">{}</text>"##, x0 + 2.0, escape(&f.label));
    }
    // Throughput panel: stacked ok / info / fail bars.
    let max_ops = buckets.iter().map(|b| b.ok + b.info + b.fail).max().unwrap_or(1).max(1) as f64;
    let base = TOP + PANEL;
    let bar = (plot / n).max(1.0) - 0.5;
    for (i, b) in buckets.iter().enumerate() {
        let mut y = base;
        for (count, color) in [(b.ok, "#4393c3"), (b.info, "#fdb863"), (b.fail, "#d6604d")] {
            let h = PANEL * count as f64 / max_ops;
            y -= h;
            if count > 0 {
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{color}"/>"#,
                    x_of(i as f64)
                );
            }
        }
    }
    let _ = writeln!(s, r#"<text x="4" y="{}">{max_ops:.0} ops/s</text>"#, TOP + 10.0);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="{}">ops/s: ok (blue), info (orange), fail (red)</text>"#, base + 14.0);
    // Latency panel, log scale from 1 ms to 10 s.
    let top2 = base + GAP;
    let y_of = |ms: f64| top2 + PANEL - PANEL * (ms.max(1.0).log10() / 4.0).min(1.0);
    for (ms, label) in [(1.0, "1ms"), (10.0, "10ms"), (100.0, "100ms"), (1000.0, "1s"), (10000.0, "10s")] {
        let y = y_of(ms);
        let _ = writeln!(s, r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##, WIDTH - RIGHT);
        let _ = writeln!(s, r#"<text x="4" y="{:.1}">{label}</text>"#, y + 4.0);
    }
    for (field, color) in [(0, "#2166ac"), (1, "#b2182b")] {
        let points: Vec<String> = buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.ok > 0)
            .map(|(i, b)| {
                let ms = if field == 0 { b.p50_ms } else { b.p99_ms };
                format!("{:.1},{:.1}", x_of(i as f64 + 0.5), y_of(ms))
            })
            .collect();
        let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{color}"/>"#, points.join(" "));
    }
    let _ =
        writeln!(s, r#"<text x="{LEFT}" y="{}">latency of ok ops: p50 (blue), p99 (red)</text>"#, top2 + PANEL + 14.0);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{}">seconds since start ({n:.0} s)</text>"#,
        WIDTH / 2.0 - 60.0,
        height - 6.0
    );
    s.push_str("</svg>\n");
    s
}
