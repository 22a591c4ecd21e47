//! The HTML report and its plots, rendered from a real (small) evaluation of the shipped model:
//! self-contained, well-formed, with decodable images, the report's numbers, one plotted line per
//! series and all user-controlled text escaped.

use std::sync::OnceLock;

use base64::Engine as _;
use candle_core::Device;
use gauntlet::attacks::{Norm, Registry};
use gauntlet::datasets::samples as datasets;
use gauntlet::eval::{evaluate_keeping, EvalConfig, Silent};
use gauntlet::gate::Gate;
use gauntlet::models::zoo;
use gauntlet::report::adversarial::AdvExample;
use gauntlet::report::samples::SampleRecord;
use gauntlet::report::{fmt_eps, CertifiedRow, Check, DatasetInfo, Meta, ModelInfo, Report, RunInfo, Status};
use gauntlet::report::{html, plots};

struct Run {
    report: Report,
    records: Vec<SampleRecord>,
    examples: Vec<AdvExample>,
}

const ATTACKS: [&str; 2] = ["fgsm", "pgd"];

/// FGSM and 5-step PGD on 40 MNIST samples at two L∞ budgets, two examples kept per attack, with
/// integrity checks and a gate verdict filled in. Computed once for all tests.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
        let mut data = datasets::mnist_test_1k().unwrap();
        data.truncate(40);
        let r = Registry::default();
        let cfg = EvalConfig {
            attacks: vec![r.create("fgsm").unwrap(), r.create("pgd:steps=5").unwrap()],
            norm: Norm::Linf,
            eps: vec![0.1, 0.2],
            seed: 3,
            batch_size: 40,
            targets: None,
            cascade: false,
        };
        let ev = evaluate_keeping(&model, &data, &cfg, &Silent, 2).unwrap();
        let meta = Meta {
            model: ModelInfo { source: "builtin:mnist-cnn".into(), input: [1, 28, 28], classes: 10, parameters: 1, preprocessing: "none".into() },
            dataset: DatasetInfo { source: data.source.clone(), samples: 40 },
            seed: 3,
            bounds: [0.0, 1.0],
            run: RunInfo { device: "cpu".into(), threads: 1, batch_size: 40, time_s: 1.5, clean_time_s: 0.1 },
        };
        let mut report = Report::new(&ev, meta);
        report.checks = vec![
            Check { name: "gradients".into(), status: Status::Pass, detail: "fine".into() },
            Check { name: "eps_monotone".into(), status: Status::Warn, detail: "look closer".into() },
            Check { name: "within_budget".into(), status: Status::Fail, detail: "out of budget".into() },
        ];
        let gate = Gate::parse("[[rule]]\nmetric = \"clean_accuracy\"\nmin = 0.5\n\n[[rule]]\nmetric = \"robust_accuracy\"\nattack = \"pgd\"\nnorm = \"linf\"\neps = 0.2\nmin = 0.99\n").unwrap();
        report.gate = Some(gate.evaluate("gate.toml", &report, None));
        let examples = ev.adversarial_examples(&data).unwrap();
        Run { records: ev.sample_records(), examples, report }
    })
}

/// The text between `<tag ...>` and its `</tag>`, for every element `tag` in order.
fn elements<'a>(doc: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        if !after.starts_with([' ', '>', '\n']) {
            rest = after;
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end..];
    }
    out
}

/// Text with the tags removed and the basic entities decoded.
fn text(fragment: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in fragment.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// Checks that the tags nest properly (void elements and `<!…>` aside; script and style bodies
/// skipped) and returns the number of elements.
fn check_well_formed(doc: &str, html: bool) -> usize {
    const VOID: [&str; 6] = ["meta", "img", "br", "wbr", "link", "input"];
    let mut stack: Vec<String> = Vec::new();
    let mut count = 0;
    let mut rest = doc;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        if rest.starts_with('!') || rest.starts_with('?') {
            continue;
        }
        let end = rest.find('>').expect("unterminated tag");
        let tag = &rest[..end];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(open, name.trim(), "<{open}> closed by </{name}>");
        } else {
            count += 1;
            let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            assert!(!name.is_empty(), "malformed tag <{tag}>");
            let void = tag.ends_with('/') || (html && VOID.contains(&name.as_str()));
            if !void {
                if html && (name == "script" || name == "style") {
                    let close = format!("</{name}>");
                    let body_end = rest.find(&close).unwrap_or_else(|| panic!("<{name}> not closed"));
                    rest = &rest[body_end + close.len()..];
                    continue;
                }
                stack.push(name);
            }
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    count
}

/// Polylines drawn in this colour (`#rrggbb`, any case).
fn polylines_in(svg: &str, color: &str) -> usize {
    let needle = format!("stroke=\"{color}\"").to_ascii_uppercase();
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p[..p.find('>').unwrap_or(p.len())].to_ascii_uppercase().contains(&needle))
        .count()
}

fn svg_texts(svg: &str) -> Vec<String> {
    elements(svg, "text").into_iter().map(|t| text(t).trim().to_string()).collect()
}

#[test]
fn robust_curve_has_one_line_per_attack_and_labelled_axes() {
    let r = &run().report;
    let svg = plots::robust_curve_svg(r);
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(check_well_formed(&svg, false) > 20);
    for (i, a) in ATTACKS.iter().enumerate() {
        assert_eq!(polylines_in(&svg, &plots::series_color(i)), 1, "one curve for {a}");
    }
    assert_eq!(polylines_in(&svg, plots::WORST_COLOR), 1, "one worst-case curve");
    // The worst-case curve starts at the clean accuracy and passes through the worst case (y = 0%
    // is at the bottom of the plot area: lower accuracy, larger y).
    let texts = svg_texts(&svg);
    for label in ["0%", "20%", "100%", "0", "0.1", "0.2", "fgsm", "pgd", "worst case", "robust accuracy (%)"] {
        assert!(texts.iter().any(|t| t == label), "no text {label:?} in the plot: {texts:?}");
    }
    assert!(texts.iter().any(|t| t.contains("ε (L∞")), "x axis names the norm: {texts:?}");
}

#[test]
fn perturbation_histogram_counts_each_broken_sample_once_per_attack() {
    let Run { report, records, .. } = run();
    let svg = plots::perturbation_svg(report, records);
    assert!(check_well_formed(&svg, false) > 20);
    let texts = svg_texts(&svg);
    for (i, a) in ATTACKS.iter().enumerate() {
        assert_eq!(polylines_in(&svg, &plots::series_color(i)), 1, "one outline for {a}");
        // Broken at the largest ε counts every sample broken at any ε, once.
        let broken = report.results.iter().rfind(|x| x.attack == *a).unwrap().broken;
        assert!(broken > 0, "{a} broke nothing: the test needs examples");
        let label = format!("{a} ({broken} broken)");
        assert!(texts.contains(&label), "no legend {label:?}: {texts:?}");
    }
    for label in ["0", "0.2", "broken samples", "‖δ‖∞ of the successful perturbation"] {
        assert!(texts.iter().any(|t| t == label), "no text {label:?} in the plot: {texts:?}");
    }
}

#[test]
fn html_is_self_contained_and_well_formed_with_decodable_images() {
    let Run { report, records, examples } = run();
    assert_eq!(examples.len(), 4, "two examples kept per attack");
    let doc = html::report(report, records, examples);
    assert!(doc.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"), "HTML5 doctype and language");
    assert!(doc.contains("<meta charset=\"utf-8\">"));
    check_well_formed(&doc, true);
    let lower = doc.to_ascii_lowercase();
    for bad in ["<link", "@import", "url(", "<iframe", "<object", "<embed"] {
        assert!(!lower.contains(bad), "external-resource construct {bad:?} in the report");
    }
    for attr in ["src=", "href=", "xlink:href="] {
        for (i, _) in lower.match_indices(attr) {
            let value = lower[i + attr.len()..].trim_start_matches(['"', '\'']);
            assert!(
                value.starts_with("data:image/png;base64,"),
                "{attr} to something other than an inline PNG: {}",
                &value[..value.len().min(60)]
            );
        }
    }
    assert!(!lower.contains("http://") && !lower.contains("https://"), "no URLs at all");

    // Every image: a PNG of the displayed size (28×28 enlarged 4×), three per example.
    let imgs: Vec<&str> = doc.split("<img ").skip(1).map(|s| &s[..s.find('>').unwrap()]).collect();
    assert_eq!(imgs.len(), 3 * examples.len());
    let scale = html::display_scale([1, 28, 28]);
    assert_eq!(scale, 4);
    for tag in imgs {
        let attr = |name: &str| {
            let v = &tag[tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2..];
            &v[..v.find('"').unwrap()]
        };
        let payload = attr("src").strip_prefix("data:image/png;base64,").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD.decode(payload).unwrap();
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
        assert_eq!((img.width(), img.height()), (28 * scale, 28 * scale));
        assert_eq!((attr("width"), attr("height")), ("112", "112"));
        assert!(!attr("alt").is_empty());
    }
    // The adversarial image is the kept one, not the clean one, and the caption says what happened.
    for ex in examples {
        let caption = format!("label {} → clean {} → adversarial <b>{}</b>", ex.label, ex.clean_pred, ex.adv_pred);
        assert!(doc.contains(&caption), "no caption {caption:?}");
        assert_ne!(ex.label, ex.adv_pred);
        assert!(doc.contains(&format!("‖δ‖∞ {:.4} · ‖δ‖₂ {:.4}", ex.linf, ex.l2)));
    }
    // The script that lets a browser report what rendered.
    assert!(doc.contains("data-images-loaded") && doc.contains("getBBox"));
    assert_eq!(elements(&doc, "svg").len(), 2, "the two plots, inline");
}

#[test]
fn tables_show_the_reports_numbers() {
    let Run { report, records, examples } = run();
    let doc = html::report(report, records, examples);
    let rows = |table_id: &str| -> Vec<Vec<String>> {
        let start = doc.find(&format!("<table id=\"{table_id}\"")).unwrap_or_else(|| panic!("no table {table_id}"));
        let table = &doc[start..start + doc[start..].find("</table>").unwrap()];
        elements(elements(table, "tbody")[0], "tr")
            .into_iter()
            .map(|tr| elements(tr, "td").into_iter().map(text).collect())
            .collect()
    };
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    let results = rows("results");
    assert_eq!(results.len(), report.results.len());
    for (row, x) in results.iter().zip(&report.results) {
        assert!(row[0].starts_with(&x.attack), "{row:?}");
        assert_eq!(row[1], fmt_eps(x.eps));
        assert_eq!(row[2], pct(x.robust_accuracy));
        assert_eq!(row[3], format!("{}/{}", x.robust, report.samples));
        assert_eq!(row[4], format!("{:.2}", x.drop_pp));
        assert_eq!(row[5], pct(x.attack_success_rate));
        let p = x.perturbation.as_ref().expect("every cell broke something");
        assert_eq!(row[6], format!("{:.3} / {:.3} / {:.3}", p.linf.mean, p.linf.median, p.linf.max));
        assert_eq!(row[7], format!("{:.3} / {:.3} / {:.3}", p.l2.mean, p.l2.median, p.l2.max));
    }
    let worst = rows("worst-case");
    assert_eq!(worst.len(), report.worst_case.len());
    for (row, w) in worst.iter().zip(&report.worst_case) {
        assert_eq!((row[0].as_str(), row[1].as_str()), (fmt_eps(w.eps).as_str(), pct(w.robust_accuracy).as_str()));
    }
    assert!(doc.contains(&format!("Clean accuracy <b>{}</b>", pct(report.clean_accuracy))));
    // Checks, their status coloured.
    let checks = rows("checks");
    assert_eq!(checks.len(), 3);
    for (row, c) in checks.iter().zip(&report.checks) {
        assert_eq!(
            (row[0].as_str(), row[1].as_str(), row[2].as_str()),
            (c.status.name(), c.name.as_str(), c.detail.as_str())
        );
    }
    assert!(doc.contains("<span class=\"badge fail\">FAIL</span></td><td><code>within_budget</code>"));
    assert!(doc.contains("<span class=\"badge warn\">WARN</span>"));
    // The gate: robust accuracy ≥ 0.99 against PGD fails.
    let gate = report.gate.as_ref().unwrap();
    assert!(!gate.passed);
    assert!(doc.contains("<div class=\"banner fail\" id=\"gate\">Release gate: FAIL"));
    let rules = rows("gate-rules");
    assert_eq!(rules.len(), 2);
    for (row, v) in rules.iter().zip(&gate.rules) {
        assert_eq!(row[0], if v.passed { "PASS" } else { "FAIL" });
        assert_eq!(row[2], format!("{:.4}", v.value.unwrap()));
        assert_eq!(row[6], v.message);
    }
}

#[test]
fn certified_curves_and_the_gap_band() {
    let Run { report, records, examples } = run();
    let mut r = report.clone();
    // CROWN proves a little less than the attacks leave, IBP nothing beyond the smallest ε.
    for (method, frac) in [("crown", 0.8), ("ibp", 0.0)] {
        for (k, w) in report.worst_case.iter().enumerate() {
            let certified = if k == 0 || frac > 0.0 { (w.robust as f64 * frac) as usize } else { 0 };
            let acc = certified as f64 / report.samples as f64;
            r.certified.push(CertifiedRow {
                method: method.into(),
                norm: Norm::Linf,
                eps: w.eps,
                certified_accuracy: acc,
                certified,
                broken: report.samples - w.robust,
                open: w.robust - certified,
                robust_accuracy: w.robust_accuracy,
                gap: w.robust_accuracy - acc,
                time_s: 0.25,
            });
        }
    }
    let svg = plots::robust_curve_svg(&r);
    check_well_formed(&svg, false);
    for k in 0..2 {
        assert_eq!(polylines_in(&svg, &plots::certified_color(&r, k)), 1, "one certified curve per method");
    }
    assert_ne!(plots::certified_color(&r, 0), plots::series_color(ATTACKS.len() - 1));
    for (i, a) in ATTACKS.iter().enumerate() {
        assert_eq!(polylines_in(&svg, &plots::series_color(i)), 1, "one curve for {a}");
    }
    let texts = svg_texts(&svg);
    for label in [plots::GAP_LABEL, "crown (certified)", "ibp (certified)", "worst case"] {
        assert!(texts.iter().any(|t| t == label), "no legend {label:?}: {texts:?}");
    }
    // The band: from the clean accuracy along the worst case and back along CROWN's curve.
    let polygons: Vec<&str> = svg.split("<polygon").skip(1).collect();
    assert_eq!(polygons.len(), 1, "one gap band");
    assert!(polygons[0].to_ascii_lowercase().contains(&format!("fill=\"{}\"", plots::GAP_COLOR)));
    let points = polygons[0].split("points=\"").nth(1).unwrap();
    let points = &points[..points.find('"').unwrap()];
    assert_eq!(points.split_whitespace().count(), 2 * (1 + report.worst_case.len()));
    // No certified rows: no band and no certified curves, as before.
    let plain = plots::robust_curve_svg(report);
    assert!(!plain.contains("<polygon") && !plain.contains("(certified)"));

    let doc = html::report(&r, records, examples);
    check_well_formed(&doc, true);
    assert_eq!(elements(&doc, "svg").len(), 2);
    let start = doc.find("<table id=\"certified\"").expect("a certified table");
    let table = &doc[start..start + doc[start..].find("</table>").unwrap()];
    let rows: Vec<Vec<String>> = elements(elements(table, "tbody")[0], "tr")
        .into_iter()
        .map(|tr| elements(tr, "td").into_iter().map(text).collect())
        .collect();
    assert_eq!(rows.len(), 4);
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    for (row, c) in rows.iter().zip(&r.certified) {
        assert_eq!(row[0], format!("{} (L∞)", c.method));
        assert_eq!(row[1], fmt_eps(c.eps));
        assert_eq!(row[2], pct(c.certified_accuracy));
        assert_eq!(row[3], format!("{}/40", c.certified));
        assert_eq!(row[4], pct(c.robust_accuracy));
        assert_eq!(row[5], format!("{:.2}", c.gap * 100.0));
        assert_eq!((row[6].parse::<usize>().unwrap(), row[7].parse::<usize>().unwrap()), (c.broken, c.open));
        assert_eq!(row[8], "0.25 s");
    }
    assert!(!html::report(report, records, examples).contains("id=\"certified\""));
}

#[test]
fn user_controlled_text_is_escaped() {
    const EVIL: &str = "fgsm<script>alert('x')</script>&\"";
    let Run { report, records, examples } = run();
    let mut report = report.clone();
    let rename = |s: &mut String| {
        if s == "fgsm" {
            *s = EVIL.into();
        }
    };
    report.model.source = "<script>alert(1)</script>.json".into();
    report.dataset.source = "data/<img src=x onerror=alert(1)>".into();
    report.results.iter_mut().for_each(|x| rename(&mut x.attack));
    report.worst_case.iter_mut().flat_map(|w| &mut w.broken_first_by).for_each(|f| rename(&mut f.attack));
    let mut records = records.clone();
    records.iter_mut().flat_map(|r| &mut r.results).for_each(|x| rename(&mut x.attack));
    let mut examples = examples.clone();
    examples.iter_mut().for_each(|e| rename(&mut e.attack));
    let doc = html::report(&report, &records, &examples);
    assert!(!doc.contains("<script>alert"), "unescaped script");
    assert!(!doc.contains("<img src=x"), "unescaped markup");
    assert_eq!(doc.matches("<script").count(), 1, "only the report's own script");
    assert!(doc.contains("fgsm&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"), "escaped in tables");
    assert!(doc.contains("&lt;script&gt;alert(1)&lt;/script&gt;.json"));
    // The plots' legends escape it too.
    let svg = plots::robust_curve_svg(&report);
    assert!(!svg.contains("<script") && svg.contains("fgsm&lt;script&gt;"));
    check_well_formed(&doc, true);

    let board = html::leaderboard(&[("<b>mine</b>".to_string(), &report)]);
    assert!(!board.contains("<b>mine</b>") && board.contains("&lt;b&gt;mine&lt;/b&gt;"));
    assert_eq!(board.matches("<script").count(), 1);
    check_well_formed(&board, true);
}

#[test]
fn leaderboard_ranks_by_worst_case_at_the_largest_eps() {
    let base = &run().report;
    let mut better = base.clone();
    if let Some(w) = better.worst_case.last_mut() {
        w.robust_accuracy = 0.9;
    }
    better.clean_accuracy = 0.5;
    let entries = [("base model".to_string(), base), ("robust model".to_string(), &better)];
    let doc = html::leaderboard(&entries);
    check_well_formed(&doc, true);
    let rows: Vec<Vec<String>> = elements(&doc, "tr")
        .into_iter()
        .filter(|r| r.contains("<td"))
        .map(|tr| elements(tr, "td").into_iter().map(text).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows[0][0] == "1" && rows[0][1].starts_with("robust model"), "{rows:?}");
    assert!(rows[1][0] == "2" && rows[1][1].starts_with("base model"), "{rows:?}");
    assert_eq!(rows[0][3], "50.00%", "clean accuracy");
    // Columns: rank, model, samples, clean, 2 attacks × 2 ε, worst case × 2 ε, time.
    assert_eq!(rows[0].len(), 4 + 4 + 2 + 1);
    assert_eq!(rows[0][9], "90.00%");
    assert_eq!(rows[1][9], format!("{:.2}%", base.worst_case[1].robust_accuracy * 100.0));
    let svg = plots::leaderboard_svg(&entries);
    assert_eq!(polylines_in(&svg, &plots::series_color(0)), 1);
    assert_eq!(polylines_in(&svg, &plots::series_color(1)), 1);
    assert!(svg_texts(&svg).iter().any(|t| t == "robust model"));
    assert!(!doc.contains("http://") && !doc.contains("https://"));
}
