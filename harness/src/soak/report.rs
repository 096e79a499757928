//! The soak's report: `soak.json` (everything, samples included), `soak.md` (the
//! figures and checks per implementation) and `soak.svg` (RSS, open fds, threads and
//! upstream connections over time, one line per implementation; plotters).
use super::{ImplSoak, SoakArgs};
use anyhow::Result;
use plotters::prelude::*;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

/// Writes soak.json, soak.md and soak.svg into `dir`.
pub fn write(dir: &Path, a: &SoakArgs, results: &[ImplSoak]) -> Result<()> {
    let doc = json!({
        "schema_version": 1,
        "duration_s": a.duration_s,
        "rps": a.rps,
        "concurrency": a.concurrency,
        "tolerances": {"rss_mib_per_min": a.max_rss_mib_per_min, "count_per_min": a.max_count_per_min},
        "impls": results,
    });
    std::fs::write(dir.join("soak.json"), serde_json::to_string_pretty(&doc)?)?;
    std::fs::write(dir.join("soak.md"), markdown(a, results))?;
    if let Err(e) = plot(&dir.join("soak.svg"), results) {
        eprintln!("parity soak: plot: {e}");
    }
    Ok(())
}

/// The Markdown report.
pub fn markdown(a: &SoakArgs, results: &[ImplSoak]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Soak: {} s per router, {} req/s offered, {} workers\n", a.duration_s, a.rps, a.concurrency);
    let verdict = if results.iter().all(|r| r.ok) { "PASS" } else { "FAIL" };
    let _ = writeln!(s, "Verdict: **{verdict}**. Slopes are least-squares fits over the samples after the warm-up (the first 20 %, at least 10 s); tolerances: RSS {} MiB/min, fds/threads/upstream connections {}/min.\n", a.max_rss_mib_per_min, a.max_count_per_min);
    let _ = writeln!(s, "| | {} |", results.iter().map(|r| r.imp.as_str()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(results.len()));
    let row = |s: &mut String, name: &str, f: &dyn Fn(&ImplSoak) -> String| {
        let _ = writeln!(s, "| {name} | {} |", results.iter().map(f).collect::<Vec<_>>().join(" | "));
    };
    row(&mut s, "load seconds", &|r| format!("{:.1}", r.duration_s));
    row(&mut s, "requests sent", &|r| r.sent.to_string());
    row(&mut s, "answered", &|r| r.answered.to_string());
    row(&mut s, "lost", &|r| format!("{} {}", r.lost.values().sum::<u64>(), if r.lost.is_empty() { String::new() } else { format!("{:?}", r.lost) }));
    row(&mut s, "answers by status", &|r| r.by_status.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    row(&mut s, "answers by X-Router-Error", &|r| r.by_error.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    row(&mut s, "config swaps", &|r| r.swaps.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    row(&mut s, "chaos events", &|r| r.events.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    row(&mut s, "hellos", &|r| r.hellos.to_string());
    row(&mut s, "final / last pushed version", &|r| format!("{:?} / {}", r.final_version, r.last_pushed));
    row(&mut s, "RSS slope (MiB/min)", &|r| format!("{:+.3}", r.slopes.rss_mib_per_min));
    row(&mut s, "open fds slope (/min)", &|r| format!("{:+.3}", r.slopes.fds_per_min));
    row(&mut s, "threads slope (/min)", &|r| format!("{:+.3}", r.slopes.threads_per_min));
    row(&mut s, "upstream connections slope (/min)", &|r| format!("{:+.3}", r.slopes.upstream_conns_per_min));
    row(&mut s, "RSS first → last (MiB)", &|r| match (r.samples.first(), r.samples.last()) {
        (Some(f), Some(l)) => format!("{:.1} → {:.1}", f.rss_bytes as f64 / 1048576.0, l.rss_bytes as f64 / 1048576.0),
        _ => "-".into(),
    });
    row(&mut s, "fds / threads / conns at the end", &|r| r.samples.last().map(|l| format!("{} / {} / {}", l.fds, l.threads, l.upstream_conns)).unwrap_or_default());
    row(&mut s, "probes/s a, b (first → last third)", &|r| {
        r.probe_rate.iter().map(|(n, p)| format!("{n}: {:.2} → {:.2}", p.first, p.last)).collect::<Vec<_>>().join(", ")
    });
    let _ = writeln!(s, "\n## Checks\n");
    for r in results {
        for c in &r.checks {
            let _ = writeln!(s, "- {} {}: {} — {}", if c.ok { "✅" } else { "❌" }, r.imp, c.name, c.detail);
        }
    }
    let _ = writeln!(s, "\n![resources over time](soak.svg)");
    s
}

fn color(i: usize) -> RGBColor {
    [RGBColor(0, 114, 178), RGBColor(213, 94, 0), RGBColor(0, 158, 115)][i % 3]
}

type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Four panels over time (s): RSS (MiB), open fds, threads, upstream connections.
fn plot(path: &Path, results: &[ImplSoak]) -> PlotResult {
    let root = SVGBackend::new(path, (1100, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels: [(&str, fn(&super::Sample) -> f64); 4] = [
        ("RSS (MiB)", |s| s.rss_bytes as f64 / 1048576.0),
        ("open fds", |s| s.fds as f64),
        ("threads", |s| s.threads as f64),
        ("upstream connections", |s| s.upstream_conns as f64),
    ];
    let xmax = results.iter().flat_map(|r| r.samples.iter().map(|s| s.t_s)).fold(1.0f64, f64::max);
    for (area, (label, f)) in root.split_evenly((2, 2)).iter().zip(panels) {
        let ymax = results.iter().flat_map(|r| r.samples.iter().map(f)).fold(1.0f64, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(label, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
        chart.configure_mesh().x_desc("seconds of load").draw()?;
        for (i, r) in results.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = r.samples.iter().map(|s| (s.t_s, f(s))).collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
                .label(r.imp.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}
