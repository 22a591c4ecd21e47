//! The report as one self-contained HTML file: no external resources (CSS inline, plots as inline
//! SVG, images as `data:` URIs), so it can be archived as a CI artifact and opened anywhere.
//!
//! A tiny inline script records on load, as attributes of `<body>`, how many images decoded
//! (`data-images-loaded` of `data-images-total`) and how many plots rendered with a size
//! (`data-svgs` of `data-svgs-total`); `tests/browser/check_html.sh` reads them back.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::adversarial::{self, AdvExample};
use super::format::{fmt_eps, norm_symbol, pct};
use super::plots;
use super::samples::SampleRecord;
use super::{GateOutcome, Norm, Report, Stats, Status};

/// Images are shown at least this many pixels on their longer side (integer upscaling).
const MIN_DISPLAY: usize = 112;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// The integer factor by which images of this (C, H, W) shape are enlarged in the report.
pub fn display_scale(shape: [usize; 3]) -> u32 {
    let side = shape[1].max(shape[2]).max(1);
    MIN_DISPLAY.div_ceil(side).clamp(1, 16) as u32
}

fn triple(s: &Stats) -> String {
    format!("{:.3} / {:.3} / {:.3}", s.mean, s.median, s.max)
}

fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// An SVG plot ready to inline in HTML: the namespace declaration (implied in HTML) is dropped and
/// it is given a role and a label.
fn inline_svg(svg: &str, label: &str) -> String {
    let svg = svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1);
    svg.replacen("<svg ", &format!(r#"<svg role="img" aria-label="{}" "#, escape(label)), 1)
}

fn data_png(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", STANDARD.encode(bytes))
}

const STYLE: &str = r#"
:root{--fg:#202124;--muted:#5f6368;--line:#dadce0;--bg:#f8f9fa;--card:#fff;--pass:#137333;--pass-bg:#e6f4ea;
--warn:#b06000;--warn-bg:#fef7e0;--fail:#c5221f;--fail-bg:#fce8e6;--accent:#1a73e8}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:24px}
header.top{background:#fff;border-bottom:1px solid var(--line)}
header.top .inner{max-width:1200px;margin:0 auto;padding:20px 24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 12px}
.sub{color:var(--muted)}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:18px 20px;margin:0 0 20px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:12px 0 0}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;overflow-wrap:anywhere}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:12px;margin:0 0 20px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:600;font-variant-numeric:tabular-nums}
.card .d{color:var(--muted);font-size:12px}
.banner{border-radius:8px;padding:14px 18px;margin:0 0 20px;font-weight:600;font-size:16px;border:1px solid}
.banner.pass{background:var(--pass-bg);color:var(--pass);border-color:#a8dab5}
.banner.fail{background:var(--fail-bg);color:var(--fail);border-color:#f5b7b1}
.banner .sub{font-weight:400;font-size:13px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12.5px;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
tr.worst td{font-weight:600;background:#f1f3f4}
.params{color:var(--muted);font-size:12px;max-width:300px;overflow-wrap:anywhere}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:700}
.badge.pass{background:var(--pass-bg);color:var(--pass)}
.badge.warn{background:var(--warn-bg);color:var(--warn)}
.badge.fail{background:var(--fail-bg);color:var(--fail)}
.bar{display:inline-block;width:60px;height:8px;background:#e8eaed;border-radius:4px;margin-left:8px;vertical-align:middle;overflow:hidden}
.bar i{display:block;height:100%;background:var(--accent)}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px}
figure.plot{margin:0}
figure.plot.single{max-width:780px}
td.model{min-width:150px}
figure.plot svg{width:100%;height:auto;display:block}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:14px}
figure.ex{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px;background:#fff}
.triple{display:flex;gap:8px;justify-content:center}
.triple div{text-align:center;font-size:11px;color:var(--muted)}
.triple img{display:block;image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid var(--line);max-width:100%;height:auto}
.triple div img{image-rendering:pixelated}
figcaption{margin-top:8px;font-size:12.5px;text-align:center}
figcaption b{font-weight:600}
ul.notes{margin:0;padding-left:20px;color:var(--muted)}
footer{color:var(--muted);font-size:12px;text-align:center;padding:8px 0 24px}
@media print{body{background:#fff}section,figure.ex{break-inside:avoid}}
"#;

const SCRIPT: &str = r#"
window.addEventListener("load",function(){var b=document.body,im=Array.prototype.slice.call(document.images),
sv=Array.prototype.slice.call(document.querySelectorAll("svg"));b.setAttribute("data-images-total",im.length);
b.setAttribute("data-images-loaded",im.filter(function(i){return i.complete&&i.naturalWidth>0}).length);
b.setAttribute("data-svgs-total",sv.length);b.setAttribute("data-svgs",sv.filter(function(s){try{var r=s.getBBox();
return r.width>0&&r.height>0}catch(e){return false}}).length);b.setAttribute("data-ready","1")});
"#;

fn page_start(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n<script>{SCRIPT}</script>\n</head>\n<body>\n",
        escape(title)
    );
}

fn page_end(out: &mut String, report_tool: &str) {
    let _ = write!(out, "<footer>generated by {}</footer>\n</main>\n</body>\n</html>\n", escape(report_tool));
}

/// The whole report as one self-contained HTML5 document: header and provenance, the gate's
/// verdict (if any), headline numbers, the results table with the worst case, certified accuracy,
/// minimal-norm radii, integrity checks, the plots, and the adversarial examples beside their clean
/// images.
pub fn report(report: &Report, samples: &[SampleRecord], examples: &[AdvExample]) -> String {
    let r = report;
    let mut o = String::with_capacity(64 * 1024);
    page_start(&mut o, &format!("Robustness report: {}", r.model.source));
    header(&mut o, r);
    o += "<main>\n";
    if let Some(g) = &r.gate {
        gate(&mut o, g);
    }
    headline(&mut o, r);
    results(&mut o, r);
    worst_case(&mut o, r);
    certified(&mut o, r);
    minimal_norm(&mut o, r);
    checks(&mut o, r);
    let _ = writeln!(
        o,
        "<section id=\"plots\"><h2>Plots</h2><div class=\"plots\">\
         <figure class=\"plot\">{}</figure><figure class=\"plot\">{}</figure></div></section>",
        inline_svg(&plots::robust_curve_svg(r), "robust accuracy against epsilon"),
        inline_svg(&plots::perturbation_svg(r, samples), "sizes of successful perturbations"),
    );
    gallery(&mut o, r, examples);
    notes(&mut o, r);
    page_end(&mut o, &format!("{} {}", r.tool.name, r.tool.version));
    o
}

fn header(o: &mut String, r: &Report) {
    let attacks = r.results.iter().map(|x| &x.attack).collect::<std::collections::BTreeSet<_>>().len();
    let _ = write!(
        o,
        "<header class=\"top\"><div class=\"inner\"><h1>Robustness report</h1>\
         <div class=\"sub\">{} on {}: {} attack{} under the {} threat model, {}</div>\n<dl class=\"meta\">",
        escape(&r.model.source),
        escape(&r.dataset.source),
        attacks,
        if attacks == 1 { "" } else { "s" },
        norm_symbol(r.norm),
        escape(r.goal.name()),
    );
    let [c, h, w] = r.model.input;
    let mut row = |k: &str, v: String| {
        let _ = write!(o, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row(
        "model",
        format!(
            "<code>{}</code> · input {c}×{h}×{w} · {} classes · {} parameters",
            escape(&r.model.source),
            r.model.classes,
            r.model.parameters
        ),
    );
    if r.model.preprocessing != "none" {
        row(
            "preprocessing",
            format!("{} · inside the model; ε is measured before it, in pixel space", escape(&r.model.preprocessing)),
        );
    }
    row("dataset", format!("<code>{}</code> · {} samples evaluated", escape(&r.dataset.source), r.samples));
    let mut threat = format!(
        "{} · ε ∈ {{{}}} · bounds [{}, {}] · {}",
        norm_symbol(r.norm),
        r.eps.iter().map(|&e| fmt_eps(e)).collect::<Vec<_>>().join(", "),
        r.bounds[0],
        r.bounds[1],
        escape(r.goal.name())
    );
    if let Some(t) = &r.target_mode {
        let _ = write!(threat, " ({})", escape(t));
    }
    let _ = write!(threat, " · {} protocol", r.protocol.name());
    row("threat model", threat);
    row("seed", r.seed.to_string());
    row("tool", format!("{} {} · report schema {}", escape(&r.tool.name), escape(&r.tool.version), r.schema_version));
    row(
        "run",
        format!(
            "{} · {} threads · batch {} · {} total ({} clean)",
            escape(&r.run.device),
            r.run.threads,
            r.run.batch_size,
            seconds(r.run.time_s),
            seconds(r.run.clean_time_s)
        ),
    );
    if let Some(p) = &r.provenance {
        if let Some(c) = &p.git_commit {
            row("git commit", format!("<code>{}</code>", escape(c)));
        }
        for f in p.model_files.iter().chain(&p.dataset_files) {
            row(
                "file",
                format!(
                    "<code>{}</code> · sha256 <code>{}</code> · {} bytes",
                    escape(&f.path),
                    escape(&f.sha256),
                    f.bytes
                ),
            );
        }
        row("config sha256", format!("<code>{}</code>", escape(&p.config_sha256)));
        if !p.command.is_empty() {
            row("command", format!("<code>{}</code>", escape(&p.command.join(" "))));
        }
        row("started", format!("{} · finished {}", escape(&p.started_at), escape(&p.finished_at)));
    }
    *o += "</dl></div></header>\n";
}

fn gate(o: &mut String, g: &GateOutcome) {
    let failed = g.rules.iter().filter(|v| !v.passed).count();
    let (class, word) = if g.passed { ("pass", "PASS") } else { ("fail", "FAIL") };
    let _ = writeln!(
        o,
        "<div class=\"banner {class}\" id=\"gate\">Release gate: {word} \
         <span class=\"sub\">· {} of {} rules passed · gate <code>{}</code>{}</span></div>",
        g.rules.len() - failed,
        g.rules.len(),
        escape(&g.file),
        g.baseline.as_ref().map_or(String::new(), |b| format!(" · baseline <code>{}</code>", escape(b)))
    );
    *o += "<section><h2>Gate rules</h2><div class=\"scroll\"><table id=\"gate-rules\"><thead><tr><th>verdict</th>\
           <th>rule</th><th class=\"num\">value</th><th class=\"num\">compared</th><th class=\"num\">threshold</th>\
           <th class=\"num\">baseline</th><th>message</th></tr></thead><tbody>\n";
    let num = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    for v in &g.rules {
        let (class, word) = if v.passed { ("pass", "PASS") } else { ("fail", "FAIL") };
        let _ = writeln!(
            o,
            "<tr><td><span class=\"badge {class}\">{word}</span></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{} {}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&v.name),
            num(v.value),
            num(v.compared),
            v.op.map_or("", |o| o.text()),
            num(v.threshold),
            num(v.baseline),
            escape(&v.message)
        );
    }
    *o += "</tbody></table></div></section>\n";
}

fn headline(o: &mut String, r: &Report) {
    *o += "<div class=\"cards\">";
    let mut card = |k: &str, v: String, d: String| {
        let _ = write!(
            o,
            "<div class=\"card\"><div class=\"k\">{k}</div><div class=\"v\">{v}</div><div class=\"d\">{d}</div></div>"
        );
    };
    card("clean accuracy", pct(r.clean_accuracy), format!("{} / {} correct", r.clean_correct, r.samples));
    if let Some(w) = r.worst_case.last() {
        card(
            "worst-case robust",
            pct(w.robust_accuracy),
            format!("at ε = {} ({}), {} / {} robust", fmt_eps(w.eps), norm_symbol(w.norm), w.robust, r.samples),
        );
        card("accuracy drop", format!("{:.2} pp", w.drop_pp), format!("clean − worst case at ε = {}", fmt_eps(w.eps)));
    }
    if let Some(s) = r.worst_check() {
        let failing = r.checks.iter().filter(|c| c.status != Status::Pass).count();
        card(
            "integrity checks",
            format!("<span class=\"badge {}\">{}</span>", s.name().to_lowercase(), s.name()),
            format!("{} checks, {failing} not passed", r.checks.len()),
        );
    }
    *o += "</div>\n";
}

fn results(o: &mut String, r: &Report) {
    let _ = write!(
        o,
        "<section id=\"results-section\"><h2>Results</h2><p class=\"sub\">Clean accuracy <b>{}</b> ({}/{}). \
         Robust accuracy counts samples classified correctly and not broken at this ε or a smaller one, over all \
         {} samples; success rate is broken over clean-correct; perturbation sizes are mean / median / max over \
         the broken samples.</p>\n<div class=\"scroll\"><table id=\"results\"><thead><tr><th>attack</th>\
         <th class=\"num\">ε</th><th class=\"num\">robust accuracy</th><th class=\"num\">robust</th>\
         <th class=\"num\">drop (pp)</th><th class=\"num\">success rate</th><th class=\"num\">‖δ‖∞ mean / med / max</th>\
         <th class=\"num\">‖δ‖₂ mean / med / max</th><th class=\"num\">time</th><th class=\"num\">samples/s</th>\
         </tr></thead><tbody>\n",
        pct(r.clean_accuracy),
        r.clean_correct,
        r.samples,
        r.samples
    );
    for x in &r.results {
        let (li, l2) =
            x.perturbation.as_ref().map_or(("–".into(), "–".into()), |p| (triple(&p.linf), triple(&p.l2)));
        let flags = if x.unconfirmed + x.out_of_budget > 0 {
            format!("<div class=\"params\">{} unconfirmed, {} out of budget</div>", x.unconfirmed, x.out_of_budget)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "<tr class=\"result\"><td>{}<div class=\"params\">{}</div>{flags}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}<span class=\"bar\"><i style=\"width:{:.1}%\"></i></span></td><td class=\"num\">{}/{}</td>\
             <td class=\"num\">{:.2}</td><td class=\"num\">{}</td><td class=\"num mono\">{li}</td>\
             <td class=\"num mono\">{l2}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}</td></tr>",
            escape(&x.attack),
            escape(&x.params).replace(',', ",<wbr>"),
            fmt_eps(x.eps),
            pct(x.robust_accuracy),
            (x.robust_accuracy * 100.0).clamp(0.0, 100.0),
            x.robust,
            r.samples,
            x.drop_pp,
            pct(x.attack_success_rate),
            seconds(x.time_s),
            x.samples_per_second,
        );
    }
    *o += "</tbody></table></div></section>\n";
}

fn worst_case(o: &mut String, r: &Report) {
    if r.worst_case.is_empty() {
        return;
    }
    *o += "<section id=\"worst-case-section\"><h2>Worst case over all attacks</h2><p class=\"sub\">A sample counts \
           as robust only if it resists every attack at that ε. “Broken first by” credits each broken sample to \
           the first attack, in the order run, that broke it.</p><div class=\"scroll\"><table id=\"worst-case\">\
           <thead><tr><th class=\"num\">ε</th><th class=\"num\">robust accuracy</th><th class=\"num\">robust</th>\
           <th class=\"num\">drop (pp)</th><th>broken first by</th></tr></thead><tbody>\n";
    for w in &r.worst_case {
        let first: Vec<String> =
            w.broken_first_by.iter().map(|f| format!("{} {}", escape(&f.attack), f.broken)).collect();
        let _ = writeln!(
            o,
            "<tr class=\"worst\"><td class=\"num\">{}</td><td class=\"num\">{}<span class=\"bar\"><i style=\"width:{:.1}%\"></i></span></td>\
             <td class=\"num\">{}/{}</td><td class=\"num\">{:.2}</td><td>{}</td></tr>",
            fmt_eps(w.eps),
            pct(w.robust_accuracy),
            (w.robust_accuracy * 100.0).clamp(0.0, 100.0),
            w.robust,
            r.samples,
            w.drop_pp,
            first.join(", ")
        );
    }
    *o += "</tbody></table></div></section>\n";
}

fn certified(o: &mut String, r: &Report) {
    if r.certified.is_empty() {
        return;
    }
    *o += "<section id=\"certified-section\"><h2>Certified robustness</h2><p class=\"sub\">Certified accuracy is a \
           proven lower bound on the true robust accuracy (samples classified correctly everywhere in the ε-ball), \
           the attacks' robust accuracy an upper bound; the gap between them is shaded in the plot. Open samples \
           were neither proven robust nor broken.</p><div class=\"scroll\"><table id=\"certified\"><thead><tr>\
           <th>method</th><th class=\"num\">ε</th><th class=\"num\">certified accuracy</th>\
           <th class=\"num\">certified</th><th class=\"num\">attacks' robust accuracy</th>\
           <th class=\"num\">gap (pp)</th><th class=\"num\">broken</th><th class=\"num\">open</th>\
           <th class=\"num\">time</th></tr></thead><tbody>\n";
    for c in &r.certified {
        let _ = writeln!(
            o,
            "<tr class=\"certified\"><td>{} ({})</td><td class=\"num\">{}</td><td class=\"num\">{}<span class=\"bar\">\
             <i style=\"width:{:.1}%\"></i></span></td><td class=\"num\">{}/{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{:.2}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(&c.method),
            norm_symbol(c.norm),
            fmt_eps(c.eps),
            pct(c.certified_accuracy),
            (c.certified_accuracy * 100.0).clamp(0.0, 100.0),
            c.certified,
            r.samples,
            pct(c.robust_accuracy),
            c.gap * 100.0,
            c.broken,
            c.open,
            seconds(c.time_s),
        );
    }
    *o += "</tbody></table></div></section>\n";
}

fn minimal_norm(o: &mut String, r: &Report) {
    if r.minimal_norm.is_empty() {
        return;
    }
    *o += "<section id=\"minimal-norm\"><h2>Minimal-norm radii</h2><div class=\"scroll\"><table><thead><tr>\
           <th>attack</th><th class=\"num\">found</th>";
    let qs: Vec<f64> = r.minimal_norm[0].quantiles.iter().map(|q| q.q).collect();
    for q in &qs {
        let _ = write!(o, "<th class=\"num\">q{:.0}</th>", q * 100.0);
    }
    *o += "<th class=\"num\">mean (found)</th></tr></thead><tbody>\n";
    for m in &r.minimal_norm {
        let _ = write!(
            o,
            "<tr><td>{} ({})</td><td class=\"num\">{}/{}</td>",
            escape(&m.attack),
            norm_symbol(m.norm),
            m.found,
            m.samples
        );
        for q in &m.quantiles {
            let _ = write!(o, "<td class=\"num\">{}</td>", q.radius.map_or("∞".into(), |v| format!("{v:.4}")));
        }
        let _ = writeln!(o, "<td class=\"num\">{}</td></tr>", m.mean_found.map_or("–".into(), |v| format!("{v:.4}")));
    }
    *o += "</tbody></table></div></section>\n";
}

fn checks(o: &mut String, r: &Report) {
    *o += "<section id=\"checks-section\"><h2>Integrity checks</h2>";
    if r.checks.is_empty() {
        *o += "<p class=\"sub\">No integrity checks ran for this report.</p></section>\n";
        return;
    }
    *o += "<div class=\"scroll\"><table id=\"checks\"><thead><tr><th>status</th><th>check</th><th>detail</th></tr>\
           </thead><tbody>\n";
    for c in &r.checks {
        let _ = writeln!(
            o,
            "<tr><td><span class=\"badge {}\">{}</span></td><td><code>{}</code></td><td>{}</td></tr>",
            c.status.name().to_lowercase(),
            c.status.name(),
            escape(&c.name),
            escape(&c.detail)
        );
    }
    *o += "</tbody></table></div></section>\n";
}

fn gallery(o: &mut String, r: &Report, examples: &[AdvExample]) {
    *o += "<section id=\"examples\"><h2>Adversarial examples</h2>";
    if examples.is_empty() {
        *o += "<p class=\"sub\">No adversarial examples were kept for this report.</p></section>\n";
        return;
    }
    *o += "<p class=\"sub\">Each example: the clean image, the adversarial image (verified and re-classified by \
           the evaluator) and the perturbation, amplified so that its largest entry reaches black or white \
           (mid-grey: unchanged).</p><div class=\"grid\">\n";
    for ex in examples {
        let per = ex.shape.iter().product::<usize>();
        if ex.clean.len() != per || ex.adv.len() != per || per == 0 {
            continue;
        }
        let s = display_scale(ex.shape);
        let (w, h) = (ex.shape[2] as u32 * s, ex.shape[1] as u32 * s);
        let img = |src: String, alt: String, title: &str| {
            format!("<div><img src=\"{src}\" width=\"{w}\" height=\"{h}\" alt=\"{}\">{title}</div>", escape(&alt))
        };
        let _ = writeln!(
            o,
            "<figure class=\"ex\"><div class=\"triple\">{}{}{}</div><figcaption><b>{}</b> · sample #{}<br>\
             label {} → clean {} → adversarial <b>{}</b><br>ε {} · ‖δ‖∞ {:.4} · ‖δ‖₂ {:.4}</figcaption></figure>",
            img(
                data_png(&adversarial::png(&ex.clean, ex.shape, r.bounds, s)),
                format!("clean image of sample {}", ex.index),
                "clean"
            ),
            img(
                data_png(&adversarial::png(&ex.adv, ex.shape, r.bounds, s)),
                format!("adversarial image of sample {} ({})", ex.index, ex.attack),
                "adversarial"
            ),
            img(data_png(&adversarial::diff_png(ex, s)), format!("perturbation of sample {}", ex.index), "difference"),
            escape(&ex.attack),
            ex.index,
            ex.label,
            ex.clean_pred,
            ex.adv_pred,
            fmt_eps(ex.eps),
            ex.linf,
            ex.l2
        );
    }
    *o += "</div></section>\n";
}

fn notes(o: &mut String, r: &Report) {
    *o += "<section id=\"notes\"><h2>Definitions and notes</h2><ul class=\"notes\">";
    let _ = write!(o, "<li>{}</li><li>ε: {}</li>", escape(&r.definitions.robust_accuracy), escape(&r.definitions.eps));
    for n in &r.notes {
        let _ = write!(o, "<li>{}</li>", escape(n));
    }
    *o += "</ul></section>\n";
}

/// A RobustBench-style comparison of several models' reports, ranked by worst-case robust accuracy
/// at the largest ε (highest first; ties by clean accuracy): robust accuracy per attack and ε, the
/// worst case per ε, clean accuracy and time, and a plot of the worst-case curves.
pub fn leaderboard(entries: &[(String, &Report)]) -> String {
    let mut o = String::with_capacity(32 * 1024);
    page_start(&mut o, "Robustness leaderboard");
    // Columns: every (attack, norm, ε) and every (norm, ε) of the worst case, in first-seen order.
    let mut cols: Vec<(String, Norm, f64)> = Vec::new();
    let mut worst_cols: Vec<(Norm, f64)> = Vec::new();
    for (_, r) in entries {
        for x in &r.results {
            if !cols.iter().any(|c| c.0 == x.attack && c.1 == x.norm && c.2 == x.eps) {
                cols.push((x.attack.clone(), x.norm, x.eps));
            }
        }
        for w in &r.worst_case {
            if !worst_cols.iter().any(|c| c.0 == w.norm && c.1 == w.eps) {
                worst_cols.push((w.norm, w.eps));
            }
        }
    }
    worst_cols.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let key = |r: &Report| r.worst_case.last().map_or(f64::NEG_INFINITY, |w| w.robust_accuracy);
    let mut ranked: Vec<&(String, &Report)> = entries.iter().collect();
    ranked.sort_by(|a, b| key(b.1).total_cmp(&key(a.1)).then(b.1.clean_accuracy.total_cmp(&a.1.clean_accuracy)));
    let _ = write!(
        o,
        "<header class=\"top\"><div class=\"inner\"><h1>Robustness leaderboard</h1><div class=\"sub\">{} models \
         ranked by worst-case robust accuracy at the largest ε (AutoAttack's definition: correct and unbroken by \
         every attack, over all samples)</div></div></header>\n<main>\n<section><div class=\"scroll\">\
         <table id=\"leaderboard\"><thead><tr><th class=\"num\">rank</th><th>model</th><th class=\"num\">samples</th>\
         <th class=\"num\">clean</th>",
        entries.len()
    );
    for (attack, norm, eps) in &cols {
        let _ = write!(o, "<th class=\"num\">{}<br>{} ε={}</th>", escape(attack), norm_symbol(*norm), fmt_eps(*eps));
    }
    for (norm, eps) in &worst_cols {
        let _ = write!(o, "<th class=\"num\">worst case<br>{} ε={}</th>", norm_symbol(*norm), fmt_eps(*eps));
    }
    o += "<th class=\"num\">time</th></tr></thead><tbody>\n";
    for (rank, (label, r)) in ranked.iter().enumerate() {
        let _ = write!(
            o,
            "<tr class=\"entry\"><td class=\"num\">{}</td><td class=\"model\"><b>{}</b><div class=\"params\">{}</div></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td>",
            rank + 1,
            escape(label),
            escape(&r.model.source),
            r.samples,
            pct(r.clean_accuracy)
        );
        for (attack, norm, eps) in &cols {
            let cell = r.results.iter().find(|x| &x.attack == attack && x.norm == *norm && x.eps == *eps);
            let _ = write!(o, "<td class=\"num\">{}</td>", cell.map_or("–".into(), |x| pct(x.robust_accuracy)));
        }
        for (norm, eps) in &worst_cols {
            let cell = r.worst_case.iter().find(|w| w.norm == *norm && w.eps == *eps);
            let value = cell.map_or("–".into(), |w| pct(w.robust_accuracy));
            // The ranking column: the report's own largest ε.
            if r.worst_case.last().is_some_and(|w| w.norm == *norm && w.eps == *eps) {
                let _ = write!(o, "<td class=\"num\"><b>{value}</b></td>");
            } else {
                let _ = write!(o, "<td class=\"num\">{value}</td>");
            }
        }
        let _ = writeln!(o, "<td class=\"num\">{}</td></tr>", seconds(r.run.time_s));
    }
    let _ = write!(
        o,
        "</tbody></table></div></section>\n<section id=\"plots\"><h2>Worst case against ε</h2>\
         <figure class=\"plot single\">{}</figure></section>\n",
        inline_svg(&plots::leaderboard_svg(entries), "worst-case robust accuracy against epsilon per model")
    );
    page_end(&mut o, &format!("gauntlet {}", env!("CARGO_PKG_VERSION")));
    o
}
