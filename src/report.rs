//! Self-contained HTML reports (`--report FILE.html`): one page with its charts drawn here as
//! inline SVG. No script, no stylesheet, nothing fetched: the page opens offline from a file,
//! and every string in it (dataset and variant names) is escaped.
use crate::bench::BenchReport;
use crate::eval::Report;

/// Text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A whole page around `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title></head>\n<body>\n<h1>{t}</h1>\n{body}</body></html>\n",
        t = escape(title)
    )
}

/// A table: `rows` are cells of plain text.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\n<tr>");
    for h in headers {
        s += &format!("<th>{}</th>", escape(h));
    }
    s += "</tr>\n";
    for r in rows {
        s += "<tr>";
        for c in r {
            s += &format!("<td>{}</td>", escape(c));
        }
        s += "</tr>\n";
    }
    s + "</table>\n"
}

/// A chart's opening: the figure, its SVG canvas of `w` x `h` and its title (also its
/// accessible name).
fn svg_open(title: &str, w: f64, h: f64) -> String {
    format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
         <text x=\"0\" y=\"14\" font-size=\"13\" font-weight=\"bold\">{t}</text>\n",
        t = escape(title)
    )
}

/// Horizontal bars, one per (label, value), scaled to `max` (or the largest value). Each bar
/// carries its value in `data-value`, so a test can read the chart back.
pub fn bar_chart(title: &str, bars: &[(String, f64)], max: Option<f64>) -> String {
    let (label_w, bar_w, row_h) = (230.0, 420.0, 22.0);
    let max = max
        .unwrap_or_else(|| bars.iter().map(|b| b.1).fold(0.0, f64::max))
        .max(1e-12);
    let h = row_h * bars.len() as f64 + 34.0;
    let mut s = svg_open(title, label_w + bar_w + 70.0, h);
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 26.0 + i as f64 * row_h;
        let len = (bar_w * v / max).clamp(0.0, bar_w);
        s += &format!(
            "<text x=\"0\" y=\"{ty}\" font-size=\"12\">{l}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{len:.1}\" height=\"{bh}\" fill=\"#1f5fbf\" data-value=\"{v}\"><title>{l}: {v:.4}</title></rect>\
             <text x=\"{tx:.1}\" y=\"{ty}\" font-size=\"12\">{v:.4}</text>\n",
            ty = y + 13.0,
            l = escape(label),
            bh = row_h - 6.0,
            tx = label_w + len + 6.0,
        );
    }
    s + "</svg></figure>\n"
}

/// `tenantry eval --report`: the quality table and one bar chart per metric over the variants.
pub fn eval_html(r: &Report) -> String {
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| {
            vec![
                row.variant.clone(),
                format!("{:.4}", row.ndcg_at_10),
                format!("{:.4}", row.recall_at_10),
                format!("{:.4}", row.recall_at_100),
                format!("{:.4}", row.mrr_at_10),
            ]
        })
        .collect();
    let mut body = format!(
        "<p>Dataset {}: {} documents, {} chunks, {} queries.</p>\n",
        escape(&r.dataset),
        r.documents,
        r.chunks,
        r.rows.first().map_or(0, |x| x.queries)
    );
    body += &table(
        &["mode", "nDCG@10", "recall@10", "recall@100", "MRR@10"],
        &rows,
    );
    type Metric = fn(&crate::eval::Row) -> f64;
    let metrics: [(&str, Metric); 3] = [
        ("nDCG@10", |x| x.ndcg_at_10),
        ("recall@10", |x| x.recall_at_10),
        ("MRR@10", |x| x.mrr_at_10),
    ];
    for (name, f) in metrics {
        let bars: Vec<(String, f64)> = r.rows.iter().map(|x| (x.variant.clone(), f(x))).collect();
        body += &bar_chart(&format!("{name} by mode"), &bars, Some(1.0));
    }
    page(&format!("Retrieval quality: {}", r.dataset), &body)
}

/// Line colours of the series of a line chart, in order.
const SERIES_COLORS: [&str; 5] = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#a16207"];

/// The x and y axes of a plot area.
fn axes(left: f64, top: f64, w: f64, h: f64) -> String {
    format!(
        "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#999\"/>\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#999\"/>",
        bottom = top + h,
        right = left + w,
    )
}

/// Series `i`'s line through `points` (SVG coordinates), carrying `data` (one attribute, for
/// tests to read back), and its legend entry at (`legend_x`, row `i` below `top`).
fn series_line(
    i: usize,
    name: &str,
    points: &[String],
    data: &str,
    legend_x: f64,
    top: f64,
) -> String {
    let color = SERIES_COLORS[i % SERIES_COLORS.len()];
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\" {data}><title>{n}</title></polyline>\
         <text x=\"{legend_x}\" y=\"{ly}\" font-size=\"12\" fill=\"{color}\">{n}</text>\n",
        points.join(" "),
        n = escape(name),
        ly = top + 14.0 + 16.0 * i as f64,
    )
}

/// Cumulative distributions, one line per series of samples (ms), on a shared axis up to the
/// largest p99 (the tail past it is cut, so one outlier does not flatten the rest). Each line
/// carries its sample count in `data-samples`.
pub fn cdf_chart(title: &str, series: &[(String, Vec<f64>)]) -> String {
    let (left, top, w, h) = (50.0, 24.0, 560.0, 240.0);
    let sorted: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, v)| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            v
        })
        .collect();
    let p99 = |v: &[f64]| {
        v.get((v.len() * 99 / 100).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let xmax = sorted.iter().map(|v| p99(v)).fold(0.0, f64::max).max(1e-9);
    let mut s = svg_open(title, left + w + 170.0, top + h + 30.0);
    s += &axes(left, top, w, h);
    s += &format!(
        "<text x=\"{left}\" y=\"{lx}\" font-size=\"11\">0 ms</text>\
         <text x=\"{right}\" y=\"{lx}\" font-size=\"11\" text-anchor=\"end\">{xmax:.1} ms</text>\
         <text x=\"4\" y=\"{ty}\" font-size=\"11\">100%</text><text x=\"4\" y=\"{bottom}\" font-size=\"11\">0%</text>\n",
        bottom = top + h,
        right = left + w,
        lx = top + h + 16.0,
        ty = top + 8.0,
    );
    for (i, ((name, samples), v)) in series.iter().zip(&sorted).enumerate() {
        let n = v.len().max(1) as f64;
        let points: Vec<String> = v
            .iter()
            .enumerate()
            .filter(|(_, x)| **x <= xmax)
            .map(|(k, x)| {
                format!(
                    "{:.1},{:.1}",
                    left + w * x / xmax,
                    top + h - h * (k as f64 + 1.0) / n
                )
            })
            .collect();
        let data = format!("data-samples=\"{}\"", samples.len());
        s += &series_line(i, name, &points, &data, left + w + 10.0, top);
    }
    s + "</svg></figure>\n"
}

/// Lines through points (x, y), one per series, from 0 to the largest x and y. Each line
/// carries its points in `data-points` (`x:y` pairs), so a test can read the chart back.
pub fn xy_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let (left, top, w, h) = (60.0, 24.0, 520.0, 220.0);
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let xmax = all().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let ymax = all().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let mut s = svg_open(title, left + w + 170.0, top + h + 34.0);
    s += &axes(left, top, w, h);
    s += &format!(
        "<text x=\"{left}\" y=\"{lx}\" font-size=\"11\">0</text>\
         <text x=\"{right}\" y=\"{lx}\" font-size=\"11\" text-anchor=\"end\">{xmax} {xl}</text>\
         <text x=\"{yx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{ymax:.1}</text>\
         <text x=\"{yx}\" y=\"{bottom}\" font-size=\"11\" text-anchor=\"end\">0</text>\
         <text x=\"{yx}\" y=\"{mid}\" font-size=\"11\" text-anchor=\"end\">{yl}</text>\n",
        bottom = top + h,
        right = left + w,
        lx = top + h + 16.0,
        ty = top + 8.0,
        yx = left - 4.0,
        mid = top + h / 2.0,
        xl = escape(x_label),
        yl = escape(y_label),
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let color = SERIES_COLORS[i % SERIES_COLORS.len()];
        let at = |(x, y): (f64, f64)| (left + w * x / xmax, top + h - h * y / ymax);
        let line: Vec<String> = points
            .iter()
            .map(|p| {
                let (x, y) = at(*p);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let data: Vec<String> = points.iter().map(|(x, y)| format!("{x}:{y:.3}")).collect();
        let data = format!("data-points=\"{}\"", data.join(" "));
        s += &series_line(i, name, &line, &data, left + w + 10.0, top);
        for p in points {
            let (x, y) = at(*p);
            s += &format!(
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"><title>{n}: {:.2} at {}</title></circle>",
                p.1,
                p.0,
                n = escape(name)
            );
        }
        s += "\n";
    }
    s + "</svg></figure>\n"
}

/// `tenantry bench --report`: the load table, latency distributions per mode, QPS per mode, and
/// the noisy-neighbour and ingestion-load phases.
pub fn bench_html(r: &BenchReport) -> String {
    let mut body = format!(
        "<p>{} tenants, {} chunks in all, {} closed-loop clients per mode.</p>\n",
        r.tenants, r.total_chunks, r.concurrency
    );
    let rows: Vec<Vec<String>> = r
        .runs
        .iter()
        .map(|x| {
            vec![
                x.mode.clone(),
                x.requests.to_string(),
                x.errors.to_string(),
                format!("{:.1}", x.qps),
                format!("{:.2}", x.latency.p50_ms),
                format!("{:.2}", x.latency.p95_ms),
                format!("{:.2}", x.latency.p99_ms),
                format!("{:.2}", x.latency.max_ms),
            ]
        })
        .collect();
    body += &table(
        &[
            "mode", "requests", "errors", "QPS", "p50 ms", "p95 ms", "p99 ms", "max ms",
        ],
        &rows,
    );
    let series: Vec<(String, Vec<f64>)> = r
        .runs
        .iter()
        .map(|x| (x.mode.clone(), x.samples_ms.clone()))
        .collect();
    body += &cdf_chart(
        &format!("Latency distribution at {} clients (CDF)", r.concurrency),
        &series,
    );
    let qps: Vec<(String, f64)> = r.runs.iter().map(|x| (x.mode.clone(), x.qps)).collect();
    body += &bar_chart(&format!("QPS at {} clients", r.concurrency), &qps, None);
    if !r.sweep.is_empty() {
        body += "<h2>Hybrid against concurrency</h2>\n";
        let rows: Vec<Vec<String>> = r
            .sweep
            .iter()
            .map(|x| {
                vec![
                    x.concurrency.to_string(),
                    x.requests.to_string(),
                    x.errors.to_string(),
                    format!("{:.1}", x.qps),
                    format!("{:.2}", x.latency.p50_ms),
                    format!("{:.2}", x.latency.p99_ms),
                ]
            })
            .collect();
        body += &table(
            &["clients", "requests", "errors", "QPS", "p50 ms", "p99 ms"],
            &rows,
        );
        let line = |f: fn(&crate::bench::LoadResult) -> f64| -> Vec<(f64, f64)> {
            r.sweep
                .iter()
                .map(|x| (x.concurrency as f64, f(x)))
                .collect()
        };
        body += &xy_chart(
            "Hybrid QPS against clients",
            "clients",
            "QPS",
            &[("QPS".to_string(), line(|x| x.qps))],
        );
        body += &xy_chart(
            "Hybrid latency against clients",
            "clients",
            "ms",
            &[
                ("p50".to_string(), line(|x| x.latency.p50_ms)),
                ("p99".to_string(), line(|x| x.latency.p99_ms)),
            ],
        );
        let series: Vec<(String, Vec<f64>)> = r
            .sweep
            .iter()
            .map(|x| (format!("{} clients", x.concurrency), x.samples_ms.clone()))
            .collect();
        body += &cdf_chart(
            "Hybrid latency distribution per client count (CDF)",
            &series,
        );
    }
    if let Some(n) = &r.noisy {
        let phases = [
            ("alone", &n.quiet_alone),
            ("flooder at limits, polite", &n.quiet_flood_polite),
            ("flooder at limits, hostile", &n.quiet_flood_limited),
            ("flooder without limits", &n.quiet_flood_unlimited),
        ];
        let bars: Vec<(String, f64)> = phases
            .iter()
            .map(|(name, l)| (name.to_string(), l.p99_ms))
            .collect();
        body += &bar_chart("Noisy neighbour: the quiet tenant's p99 ms", &bars, None);
    }
    if let Some(l) = &r.ingest_load {
        let bars: Vec<(String, f64)> = l
            .rows
            .iter()
            .flat_map(|x| {
                [
                    (format!("{} clients, idle", x.clients), x.idle.p99_ms),
                    (
                        format!("{} clients, ingesting", x.clients),
                        x.ingesting.p99_ms,
                    ),
                ]
            })
            .collect();
        body += &bar_chart(
            &format!(
                "Hybrid p99 ms while another tenant ingests {} chunks",
                l.chunks
            ),
            &bars,
            None,
        );
    }
    page("Tenantry bench", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_bars_carry_their_values() {
        let svg = bar_chart(
            "<b>t</b>",
            &[("a\"<x>".into(), 0.5), ("b".into(), 1.0)],
            None,
        );
        assert!(!svg.contains("<b>") && !svg.contains("a\"<x>"), "{svg}");
        assert!(svg.contains("&lt;b&gt;t&lt;/b&gt;") && svg.contains("a&quot;&lt;x&gt;"));
        assert_eq!(svg.matches("data-value=").count(), 2);
        // The longest bar is the full width; the other is half of it.
        assert!(
            svg.contains("width=\"420.0\"") && svg.contains("width=\"210.0\""),
            "{svg}"
        );
        // Nothing runs and nothing is fetched: the only URL is the SVG namespace.
        let p = page("x", &svg);
        assert!(!p.contains("<script"));
        assert_eq!(
            p.matches("http").count(),
            p.matches("http://www.w3.org/2000/svg").count()
        );
    }
}
