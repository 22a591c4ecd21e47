//! Plots of a report as standalone SVG documents: robust accuracy against ε, the sizes of the
//! successful perturbations, and a worst-case comparison of several models.
//!
//! Every series is drawn as exactly one `<polyline>` (legend markers are rectangles; shaded areas
//! are `<polygon>`s), so a plot can be checked by counting them. Text is emitted as SVG `<text>` and needs no font files.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::format::{fmt_eps, norm_symbol, same_eps};
use super::samples::SampleRecord;
use super::{Norm, Report};

/// Size of every plot, in SVG user units (pixels).
pub const SIZE: (u32, u32) = (640, 420);

/// The colour of series `i` (attacks in the order run, then minimal-norm curves), as `#rrggbb`.
pub fn series_color(i: usize) -> String {
    let RGBColor(r, g, b) = palette(i);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The colour of the worst-case curve, as `#rrggbb`.
pub const WORST_COLOR: &str = "#202124";

/// The fill colour of the gap band, as `#rrggbb`.
pub const GAP_COLOR: &str = "#fbbc04";

/// The legend label of the band between the tightest certified curve and the worst case.
pub const GAP_LABEL: &str = "gap: certified to worst case";

/// The colour of the certified curve of method `k` (in the order of `certified_methods`), as
/// `#rrggbb`: the series after the attacks and the minimal-norm curves.
pub fn certified_color(report: &Report, k: usize) -> String {
    series_color(report.attacks().len() + report.minimal_norm.len() + k)
}

/// Certification methods in the order they appear in the report.
pub fn certified_methods(report: &Report) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for c in &report.certified {
        if !names.contains(&c.method.as_str()) {
            names.push(&c.method);
        }
    }
    names
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
];
const WORST: RGBColor = RGBColor(32, 33, 36);
const GAP: RGBColor = RGBColor(251, 188, 4);
const TEXT: RGBColor = RGBColor(60, 64, 67);
const FONT: &str = "sans-serif";

fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type Res = Result<(), Box<dyn std::error::Error>>;

/// One line of a line plot: its label, colour, width, points and whether to mark the points.
struct Line {
    label: String,
    color: RGBColor,
    width: u32,
    points: Vec<(f64, f64)>,
    markers: bool,
    /// Drawn as a wide translucent band under the other lines.
    band: bool,
}

/// A shaded region of a line plot: its label, colour and outline (a closed polygon).
struct Area {
    label: String,
    color: RGBColor,
    outline: Vec<(f64, f64)>,
}

/// Robust accuracy (in %) against ε for every attack, the worst case over all attacks, the
/// accuracy implied by each minimal-norm attack's radii and, with certified rows, each method's
/// certified accuracy and the gap between the tightest of them and the worst case, shaded; every
/// curve starts at the clean accuracy at ε = 0.
pub fn robust_curve_svg(report: &Report) -> String {
    let clean = report.clean_accuracy * 100.0;
    let names = report.attacks();
    let xmax = x_max(&report.eps);
    let mut lines = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut points = vec![(0.0, clean)];
        points.extend(report.results.iter().filter(|r| r.attack == *name).map(|r| (r.eps, r.robust_accuracy * 100.0)));
        lines.push(Line { label: name.to_string(), color: palette(i), width: 2, points, markers: true, band: false });
    }
    for (j, m) in report.minimal_norm.iter().enumerate() {
        let points: Vec<(f64, f64)> = m.curve.iter().map(|p| (p.eps, p.robust_accuracy * 100.0)).collect();
        lines.push(Line {
            label: format!("{} (radius curve)", m.attack),
            color: palette(names.len() + j),
            width: 2,
            points: clip(&points, xmax),
            markers: false,
            band: false,
        });
    }
    if !report.worst_case.is_empty() {
        let mut points = vec![(0.0, clean)];
        points.extend(report.worst_case.iter().map(|w| (w.eps, w.robust_accuracy * 100.0)));
        lines
            .insert(0, Line { label: "worst case".into(), color: WORST, width: 8, points, markers: false, band: true });
    }
    let offset = names.len() + report.minimal_norm.len();
    let rows: Vec<_> = report.certified.iter().filter(|c| c.norm == report.norm).collect();
    for (k, method) in certified_methods(report).into_iter().enumerate() {
        let mut points = vec![(0.0, clean)];
        points.extend(rows.iter().filter(|c| c.method == method).map(|c| (c.eps, c.certified_accuracy * 100.0)));
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines.push(Line {
            label: format!("{method} (certified)"),
            color: palette(offset + k),
            width: 2,
            points: clip(&points, xmax),
            markers: true,
            band: false,
        });
    }
    let mut areas = Vec::new();
    // Per ε, the highest certified accuracy (lower edge) and the attacks' worst case (upper edge).
    let mut gap: Vec<(f64, f64, f64)> = vec![(0.0, clean, clean)];
    for c in &rows {
        match gap.iter_mut().find(|g| same_eps(g.0, c.eps)) {
            Some(g) => g.1 = g.1.max(c.certified_accuracy * 100.0),
            None => gap.push((c.eps, c.certified_accuracy * 100.0, c.robust_accuracy * 100.0)),
        }
    }
    gap.retain(|g| g.0 <= xmax);
    gap.sort_by(|a, b| a.0.total_cmp(&b.0));
    if gap.len() > 1 {
        let mut outline: Vec<(f64, f64)> = gap.iter().map(|g| (g.0, g.2)).collect();
        outline.extend(gap.iter().rev().map(|g| (g.0, g.1)));
        areas.push(Area { label: GAP_LABEL.into(), color: GAP, outline });
    }
    let caption = format!("Robust accuracy vs ε ({}, {} samples)", norm_symbol(report.norm), report.samples);
    let x_desc = format!("ε ({} budget, pixel units)", norm_symbol(report.norm));
    render(|root| line_chart(root, &caption, &x_desc, xmax, &areas, &lines))
}

/// Worst-case robust accuracy (in %) against ε, one line per model, each starting at the model's
/// clean accuracy at ε = 0.
pub fn leaderboard_svg(entries: &[(String, &Report)]) -> String {
    let all_eps: Vec<f64> = entries.iter().flat_map(|(_, r)| r.eps.iter().copied()).collect();
    let xmax = x_max(&all_eps);
    let lines: Vec<Line> = entries
        .iter()
        .enumerate()
        .map(|(i, (label, r))| {
            let mut points = vec![(0.0, r.clean_accuracy * 100.0)];
            points.extend(r.worst_case.iter().map(|w| (w.eps, w.robust_accuracy * 100.0)));
            Line { label: label.clone(), color: palette(i), width: 2, points, markers: true, band: false }
        })
        .collect();
    let mut norms: Vec<&str> = entries.iter().map(|(_, r)| norm_symbol(r.norm)).collect();
    norms.dedup();
    let norm = norms.join("/");
    let caption = format!("Worst-case robust accuracy vs ε ({norm})");
    render(|root| line_chart(root, &caption, &format!("ε ({norm} budget, pixel units)"), xmax, &[], &lines))
}

/// Histogram of the sizes, in the threat model's norm, of the successful perturbations: per attack,
/// each broken sample counted once, with the perturbation found at the smallest ε that broke it.
pub fn perturbation_svg(report: &Report, samples: &[SampleRecord]) -> String {
    let names = report.attacks();
    let l2 = report.norm == Norm::L2;
    let sizes: Vec<Vec<f64>> = names
        .iter()
        .map(|name| {
            samples
                .iter()
                .filter_map(|s| {
                    let hit = s.results.iter().find(|r| r.attack == *name && r.broken)?;
                    if l2 {
                        hit.l2
                    } else {
                        hit.linf
                    }
                })
                .filter(|v| v.is_finite())
                .collect()
        })
        .collect();
    const BINS: usize = 24;
    let largest = sizes.iter().flatten().copied().fold(0.0, f64::max);
    let upper = largest.max(report.eps.iter().copied().fold(0.0, f64::max));
    let upper = if upper > 0.0 { upper } else { 1.0 };
    // Bin b is centred on b·width, so that budgets which divide the axis evenly (where L∞ attacks
    // that use their whole budget pile up) sit in the middle of a bin, on their tick.
    let width = upper / BINS as f64;
    let counts: Vec<Vec<u32>> = sizes
        .iter()
        .map(|v| {
            let mut c = vec![0u32; BINS + 1];
            for &x in v {
                c[((x / width).round().max(0.0) as usize).min(BINS)] += 1;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(0);
    let ymax = (top + top.div_ceil(6)).max(1);
    let norm = norm_symbol(report.norm);
    let caption = format!("Sizes of successful perturbations ({norm})");
    let x_desc =
        if l2 { "‖δ‖₂ of the successful perturbation" } else { "‖δ‖∞ of the successful perturbation" };
    render(|root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&caption, (FONT, 18).into_font().color(&TEXT))
            .margin(14)
            .x_label_area_size(46)
            .y_label_area_size(58)
            .build_cartesian_2d(0f64..upper + width / 2.0, 0u32..ymax)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("broken samples")
            .x_label_formatter(&|v| fmt_eps(*v))
            .x_labels(8)
            .y_labels(6)
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(232, 234, 237))
            .axis_style(RGBColor(154, 160, 166))
            .label_style((FONT, 14).into_font().color(&TEXT))
            .axis_desc_style((FONT, 15).into_font().color(&TEXT))
            .draw()?;
        // Grouped bars: each bin is split between the attacks, one outline per attack.
        let k = names.len().max(1) as f64;
        for (i, (name, c)) in names.iter().zip(&counts).enumerate() {
            let color = palette(i);
            let bar = |b: usize| {
                let x0 = (b as f64 - 0.5) * width + width * (0.08 + 0.84 * i as f64 / k);
                (x0.max(0.0), x0 + width * 0.84 / k)
            };
            chart.draw_series(c.iter().enumerate().filter(|(_, &n)| n > 0).map(|(b, &n)| {
                let (x0, x1) = bar(b);
                Rectangle::new([(x0, 0), (x1, n)], color.mix(0.35).filled())
            }))?;
            let mut outline = Vec::with_capacity(4 * (BINS + 1));
            for (b, &n) in c.iter().enumerate().filter(|(_, &n)| n > 0) {
                let (x0, x1) = bar(b);
                outline.extend([(x0, 0), (x0, n), (x1, n), (x1, 0)]);
            }
            let total = sizes[i].len();
            chart
                .draw_series(LineSeries::new(outline, color.stroke_width(2)))?
                .label(format!("{name} ({total} broken)"))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
        }
        legend(&mut chart)?;
        Ok(())
    })
}

/// The upper end of the ε axis: the largest budget (1 if there is none).
fn x_max(eps: &[f64]) -> f64 {
    let m = eps.iter().copied().filter(|e| e.is_finite()).fold(0.0, f64::max);
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

/// The part of a curve (ascending in x) with x ≤ `xmax`, ending exactly at `xmax` when it goes on.
fn clip(points: &[(f64, f64)], xmax: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 <= xmax).collect();
    if let (Some(&last), Some(&next)) = (out.last(), points.iter().find(|p| p.0 > xmax)) {
        if last.0 < xmax {
            let t = (xmax - last.0) / (next.0 - last.0);
            out.push((xmax, last.1 + t * (next.1 - last.1)));
        }
    }
    out
}

fn line_chart(
    root: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    x_desc: &str,
    xmax: f64,
    areas: &[Area],
    lines: &[Line],
) -> Res {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 18).into_font().color(&TEXT))
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(58)
        .build_cartesian_2d(0f64..xmax * 1.02, 0f64..102f64)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("robust accuracy (%)")
        .x_label_formatter(&|v| fmt_eps(*v))
        .y_label_formatter(&|v| format!("{v:.0}%"))
        .x_labels(8)
        .y_labels(6)
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(232, 234, 237))
        .axis_style(RGBColor(154, 160, 166))
        .label_style((FONT, 14).into_font().color(&TEXT))
        .axis_desc_style((FONT, 15).into_font().color(&TEXT))
        .draw()?;
    // Areas first, under every line.
    for area in areas {
        let color = area.color.mix(0.3);
        chart
            .draw_series(std::iter::once(Polygon::new(area.outline.clone(), color.filled())))?
            .label(area.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
    }
    for line in lines {
        let color = if line.band { line.color.mix(0.3) } else { line.color.to_rgba() };
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(line.width)))?
            .label(line.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
        if line.markers {
            chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    legend(&mut chart)?;
    Ok(())
}

fn legend<'a, X, Y>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>) -> Res
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(218, 220, 224))
        .label_font((FONT, 14).into_font().color(&TEXT))
        .margin(10)
        .draw()?;
    Ok(())
}

/// Draws into a fresh SVG document; a drawing error (none is expected when writing to memory)
/// yields a document that says so instead of a broken one.
fn render(draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Res) -> String {
    let mut buf = String::new();
    let outcome = {
        let root = SVGBackend::with_string(&mut buf, SIZE).into_drawing_area();
        draw(&root).and_then(|()| root.present().map_err(|e| e.into()))
    };
    match outcome {
        Ok(()) => buf,
        Err(e) => {
            let msg: String = e.to_string().chars().filter(|c| !matches!(c, '<' | '>' | '&')).collect();
            format!(
                r#"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg"><text x="20" y="40" font-family="sans-serif" font-size="14">plot unavailable: {msg}</text></svg>"#,
                w = SIZE.0,
                h = SIZE.1
            )
        }
    }
}
