//! CI-readable outputs of a real evaluation: report.json and samples.jsonl against their JSON
//! Schemas (docs/*.schema.json), JUnit XML against a JUnit XSD (xmllint), and the Markdown summary
//! and leaderboard.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use candle_core::Device;
use gauntlet::attacks::{Norm, Registry};
use gauntlet::checks;
use gauntlet::datasets::samples as builtin;
use gauntlet::eval::{evaluate, EvalConfig, Evaluation, Silent};
use gauntlet::gate::Gate;
use gauntlet::models::{zoo, Classifier};
use gauntlet::report::provenance::{self, Provenance};
use gauntlet::report::samples::{CertStatus, SampleCertificate, SampleRecord};
use gauntlet::report::{html, junit, markdown, plots, samples};
use gauntlet::report::{CertifiedRow, Check, DatasetInfo, Meta, ModelInfo, Report, RunInfo, Status};
use serde_json::{json, Value};

const N: usize = 40;
const FAILING_RULE: &str = "robust accuracy | worst & eps 0.3";
const STARTED: &str = "2025-03-04T05:06:07Z";

struct Fixture {
    ev: Evaluation,
    /// With checks, provenance and a gate with one failing rule.
    report: Report,
}

/// One evaluation shared by every test: the shipped model on 40 samples, FGSM, PGD and FMN at ε
/// 0.1 and 0.3, the real integrity checks on a few samples plus a WARN and a FAIL with awkward
/// characters, provenance from the helpers, and a gate with passing rules and one failing rule.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let model = zoo::mnist_cnn(&Device::Cpu).unwrap();
        let mut data = builtin::mnist_test_1k().unwrap();
        data.truncate(N);
        let registry = Registry::default();
        let specs = ["fgsm", "pgd:steps=5", "fmn:steps=10"];
        let cfg = EvalConfig {
            attacks: specs.iter().map(|s| registry.create(s).unwrap()).collect(),
            norm: Norm::Linf,
            eps: vec![0.1, 0.3],
            seed: 3,
            batch_size: 64,
            targets: None,
            cascade: false,
        };
        let ev = evaluate(&model, &data, &cfg, &Silent).unwrap();
        let meta = Meta {
            model: ModelInfo {
                source: zoo::MNIST_CNN.into(),
                input: model.input_shape(),
                classes: model.num_classes(),
                parameters: model.parameter_count(),
                preprocessing: "none".into(),
            },
            dataset: DatasetInfo { source: data.source.clone(), samples: N },
            seed: 3,
            bounds: [0.0, 1.0],
            run: RunInfo {
                device: "cpu".into(),
                threads: 1,
                batch_size: 64,
                time_s: ev.total_seconds,
                clean_time_s: ev.clean_seconds,
            },
        };
        let mut report = Report::new(&ev, meta);
        report.checks = checks::run(&model, &data, &cfg, &ev, &registry, 8).unwrap();
        report.checks.push(Check {
            name: "synthetic_warn".into(),
            status: Status::Warn,
            detail: "a | b <c> & \"d\" \u{1}".into(),
        });
        report.checks.push(Check {
            name: "synthetic_fail".into(),
            status: Status::Fail,
            detail: "12 of 40 | see <docs>".into(),
        });
        let config = json!({ "attacks": specs, "norm": "linf", "eps": [0.1, 0.3], "seed": 3, "limit": N });
        report.provenance = Some(Provenance {
            model_files: provenance::model_files(None).unwrap(),
            dataset_files: provenance::dataset_files(None).unwrap(),
            config_sha256: provenance::config_hash(&config),
            config,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: Some("0123456789abcdef0123456789abcdef01234567-dirty".into()),
            command: vec!["gauntlet".into(), "run".into(), "--limit".into(), N.to_string()],
            started_at: STARTED.into(),
            finished_at: provenance::now(),
        });
        let gate = Gate::parse(&format!(
            r#"
            [[rule]]
            metric = "clean_accuracy"
            min = 0.5

            [[rule]]
            name = "{FAILING_RULE}"
            metric = "robust_accuracy"
            eps = 0.3
            min = 0.8

            [[rule]]
            metric = "drop"
            attack = "fgsm"
            eps = 0.1
            max_points = 100

            [[rule]]
            metric = "check"
            check = "eps_monotone"
            "#
        ))
        .unwrap();
        report.gate = Some(gate.evaluate("gate.toml", &report, None));
        Fixture { ev, report }
    })
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

// ---------------------------------------------------------------------------------------------
// JSON Schemas

fn compile(path: &str) -> (boon::Schemas, boon::SchemaIndex) {
    let text = std::fs::read_to_string(path).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let id = schema["$id"].as_str().unwrap().to_string();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource(&id, schema).unwrap();
    let index = compiler.compile(&id, &mut schemas).unwrap_or_else(|e| panic!("{path}: {e:#}"));
    (schemas, index)
}

fn report_schema() -> &'static (boon::Schemas, boon::SchemaIndex) {
    static S: OnceLock<(boon::Schemas, boon::SchemaIndex)> = OnceLock::new();
    S.get_or_init(|| compile("docs/report.schema.json"))
}

fn check_report(v: &Value) -> Result<(), String> {
    let (schemas, index) = report_schema();
    schemas.validate(v, *index).map_err(|e| format!("{e:#}"))
}

#[test]
fn report_json_matches_its_schema() {
    let f = fixture();
    let json: Value = serde_json::from_str(&f.report.to_json()).unwrap();
    check_report(&json).unwrap_or_else(|e| panic!("report.json does not match docs/report.schema.json:\n{e}"));
    // Every part of the schema was exercised: optional blocks are present.
    for key in ["provenance", "gate", "minimal_norm", "checks"] {
        assert!(!json[key].is_null(), "{key} missing from the fixture");
    }
    assert!(!json["minimal_norm"].as_array().unwrap().is_empty());
    // The bare report as the library builds it (no provenance, no gate, no checks) matches too.
    let mut bare = f.report.clone();
    (bare.provenance, bare.gate, bare.checks) = (None, None, Vec::new());
    check_report(&serde_json::to_value(&bare).unwrap()).unwrap();
}

#[test]
fn report_schema_rejects_broken_reports() {
    let good: Value = serde_json::to_value(&fixture().report).unwrap();
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: [Mutation; 12] = [
        ("robust_accuracy 1.5", |v| v["results"][0]["robust_accuracy"] = json!(1.5)),
        ("results missing", |v| {
            v.as_object_mut().unwrap().remove("results");
        }),
        ("check status ok", |v| v["checks"][0]["status"] = json!("ok")),
        ("schema_version 1", |v| v["schema_version"] = json!(1)),
        ("unknown top-level field", |v| v["extra"] = json!(true)),
        ("unknown field in a result", |v| v["results"][0]["accuracy"] = json!(0.5)),
        ("norm l1", |v| v["norm"] = json!("l1")),
        ("protocol serial", |v| v["protocol"] = json!("serial")),
        ("gate metric accuracy", |v| v["gate"]["rules"][0]["metric"] = json!("accuracy")),
        ("negative clean accuracy", |v| v["clean_accuracy"] = json!(-0.1)),
        ("short sha256", |v| v["provenance"]["config_sha256"] = json!("abc")),
        ("target_mode on an untargeted run", |v| v["target_mode"] = json!("random")),
    ];
    assert!(check_report(&good).is_ok());
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert_ne!(bad, good, "{what}: the mutation changed nothing");
        assert!(check_report(&bad).is_err(), "the schema accepted a report with {what}");
    }
}

#[test]
fn samples_jsonl_matches_its_schema() {
    let f = fixture();
    let (schemas, index) = compile("docs/samples.schema.json");
    let text = samples::to_jsonl(&f.ev.sample_records());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), N);
    let mut broken = 0;
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        schemas.validate(&v, index).unwrap_or_else(|e| panic!("samples.jsonl line {}: {e:#}\n{line}", i + 1));
        broken += v["results"].as_array().unwrap().iter().filter(|r| r["broken"] == json!(true)).count();
    }
    assert!(broken > 0, "no broken sample: the conditional part of the schema went untested");
    // Rejections: a broken result without its perturbation, an unbroken one with one, a label < 0.
    let line: Value = serde_json::from_str(
        lines.iter().find(|l| l.contains("\"broken\":true")).expect("a line with a broken result"),
    )
    .unwrap();
    let k = line["results"].as_array().unwrap().iter().position(|r| r["broken"] == json!(true)).unwrap();
    let mut bad = line.clone();
    bad["results"][k].as_object_mut().unwrap().remove("linf");
    assert!(schemas.validate(&bad, index).is_err(), "accepted a broken result without linf");
    let mut bad = line.clone();
    bad["results"][k]["broken"] = json!(false);
    assert!(schemas.validate(&bad, index).is_err(), "accepted an unbroken result with a perturbation");
    let mut bad = line.clone();
    bad["label"] = json!(-1);
    assert!(schemas.validate(&bad, index).is_err(), "accepted label -1");
}

// ---------------------------------------------------------------------------------------------
// JUnit

/// Validates XML against tests/junit/junit.xsd with xmllint. Without xmllint (Debian's
/// libxml2-utils) the XSD validation is skipped with a message, unless GAUNTLET_REQUIRE_XMLLINT=1
/// (set by .ci/run, which installs it).
fn xmllint(xml: &str, tag: &str) {
    let path = std::env::temp_dir().join(format!("gauntlet-junit-{}-{tag}.xml", std::process::id()));
    std::fs::write(&path, xml).unwrap();
    let xsd = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/junit/junit.xsd");
    let out = Command::new("xmllint").arg("--noout").arg("--schema").arg(&xsd).arg(&path).output();
    let _ = std::fs::remove_file(&path);
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("GAUNTLET_REQUIRE_XMLLINT").is_ok_and(|v| v == "1") {
                panic!("xmllint not found: install libxml2-utils (apt-get install libxml2-utils)");
            }
            eprintln!("xmllint not found: JUnit XSD validation skipped (install libxml2-utils to run it)");
        }
        Err(e) => panic!("cannot run xmllint: {e}"),
        Ok(o) => assert!(
            o.status.success(),
            "JUnit XML ({tag}) does not validate against tests/junit/junit.xsd:\n{}\n{xml}",
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

/// The `<testsuite …>…</testsuite>` element with the given name.
fn suite<'a>(xml: &'a str, name: &str) -> &'a str {
    let start = xml.find(&format!("<testsuite name=\"{name}\"")).unwrap_or_else(|| panic!("no suite {name}:\n{xml}"));
    let end = start + xml[start..].find("</testsuite>").unwrap();
    &xml[start..end]
}

/// An attribute of the first element in `element`.
fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let open = &element[..element.find('>').unwrap()];
    let start = open.find(&key).unwrap_or_else(|| panic!("no {name} in {open}")) + key.len();
    &open[start..start + open[start..].find('"').unwrap()]
}

#[test]
fn junit_validates_and_counts() {
    let r = &fixture().report;
    let xml = junit::render(r);
    xmllint(&xml, "full");
    let gate = r.gate.as_ref().unwrap();
    assert!(!gate.passed);
    let failed: Vec<_> = gate.rules.iter().filter(|v| !v.passed).collect();
    assert_eq!(failed.len(), 1, "the fixture's gate should fail exactly one rule: {:#?}", gate.rules);
    let g = suite(&xml, "gauntlet.gate");
    assert_eq!(attribute(g, "tests"), gate.rules.len().to_string());
    assert_eq!(attribute(g, "failures"), "1");
    assert_eq!(attribute(g, "errors"), "0");
    assert_eq!(attribute(g, "skipped"), "0");
    assert_eq!(attribute(g, "timestamp"), STARTED.trim_end_matches('Z'));
    assert_eq!(attribute(g, "hostname"), "localhost");
    assert_eq!(attribute(g, "package"), "gauntlet");
    assert_eq!(g.matches("<testcase ").count(), gate.rules.len());
    assert_eq!(g.matches("<failure ").count(), 1);
    // The failure names the rule and carries the numbers (escaped for XML).
    let failure = &g[g.find("<failure ").unwrap()..];
    let message = attribute(failure, "message");
    let worst = r.worst_case.iter().find(|w| w.eps == 0.3).unwrap();
    assert!(message.starts_with("robust accuracy | worst &amp; eps 0.3: "), "{message}");
    assert!(message.contains(&pct(worst.robust_accuracy)), "{message}");
    assert!(message.contains(&format!("({}/{N})", worst.robust)), "{message}");
    assert!(message.contains("80.00%"), "{message}");
    assert_eq!(attribute(failure, "type"), "gate");
    let body = &failure[failure.find('>').unwrap() + 1..failure.find("</failure>").unwrap()];
    assert!(body.contains(&format!("value: {}", worst.robust_accuracy)), "{body}");
    assert!(body.contains("threshold: &gt;= 0.8"), "{body}");
    assert!(body.contains("baseline: -"), "{body}");
    let c = suite(&xml, "gauntlet.checks");
    let fails = r.checks.iter().filter(|c| c.status == Status::Fail).count();
    assert_eq!(attribute(c, "tests"), r.checks.len().to_string());
    assert_eq!(attribute(c, "failures"), fails.to_string());
    assert_eq!(c.matches("<failure ").count(), fails);
    assert!(c.contains(": WARN: a | b &lt;c&gt; &amp; \"d\" "), "{c}");
    assert!(!xml.contains('\u{1}'));
    // Ant's schema allows no attributes on the root.
    assert!(xml.contains("<testsuites>\n"), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), gate.rules.len() + r.checks.len());
    assert_eq!(xml.matches("<failure ").count(), 1 + fails);
    let with_host = junit::render_with(r, &junit::Options { hostname: Some("ci-runner-1".into()) });
    assert_eq!(attribute(suite(&with_host, "gauntlet.gate"), "hostname"), "ci-runner-1");
    xmllint(&with_host, "hostname");
}

#[test]
fn junit_without_gate_or_checks() {
    let mut r = fixture().report.clone();
    r.gate = None;
    let xml = junit::render(&r);
    xmllint(&xml, "checks-only");
    assert!(!xml.contains("gauntlet.gate"));
    assert_eq!(xml.matches("<testsuite ").count(), 1);
    r.checks.clear();
    r.provenance = None;
    // Awkward characters in a property: escaped or dropped, still valid XML.
    r.model.source = "models/a&b <\"x\">\u{0}\u{B}'.toml".into();
    let xml = junit::render(&r);
    xmllint(&xml, "bare");
    assert_eq!(xml.matches("<testsuite ").count(), 1);
    assert_eq!(xml.matches("<testcase ").count(), 1);
    assert!(xml.contains("<testcase name=\"evaluation\""), "{xml}");
    assert!(!xml.contains("<failure"));
    // No provenance: the time of rendering stands in (Ant's schema requires a timestamp).
    let ts = attribute(suite(&xml, "gauntlet"), "timestamp");
    assert!(ts.len() == 19 && ts.as_bytes()[10] == b'T', "{ts}");
    assert!(xml.contains(&format!("clean accuracy {} ({}/{N})", pct(r.clean_accuracy), r.clean_correct)), "{xml}");
    assert!(xml.contains("value=\"models/a&amp;b &lt;&quot;x&quot;&gt;&apos;.toml\""), "{xml}");
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// Cells of a table row, split at unescaped `|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().strip_prefix('|').unwrap().strip_suffix('|').unwrap();
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.last_mut().unwrap().push(c);
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.iter().map(|c| c.trim().to_string()).collect()
}

/// Every table in the text has rows of its header's width.
fn assert_tables_are_rectangular(md: &str) {
    let mut width = None;
    for line in md.lines() {
        if line.starts_with('|') {
            let n = cells(line).len();
            match width {
                None => width = Some(n),
                Some(w) => assert_eq!(n, w, "ragged table row: {line}\n{md}"),
            }
        } else {
            width = None;
        }
    }
}

fn row(md: &str, first_cell: &str) -> Vec<String> {
    let line = md
        .lines()
        .find(|l| l.starts_with('|') && cells(l)[0] == first_cell)
        .unwrap_or_else(|| panic!("no row {first_cell}:\n{md}"));
    cells(line)
}

#[test]
fn markdown_summary_has_the_numbers() {
    let r = &fixture().report;
    let md = markdown::summary(r);
    assert_tables_are_rectangular(&md);
    let gate = r.gate.as_ref().unwrap();
    let headline = md.lines().next().unwrap();
    assert!(headline.starts_with("## ❌ FAIL"), "{headline}");
    assert!(headline.contains(&format!("1 of {} rules failed", gate.rules.len())), "{headline}");
    // The failing rule: name with `|` escaped, value and threshold in percent, the message.
    let failing = row(&md, "robust accuracy \\| worst & eps 0.3");
    let worst = r.worst_case.iter().find(|w| w.eps == 0.3).unwrap();
    assert_eq!(failing[1], pct(worst.robust_accuracy));
    assert_eq!(failing[2], "≥ 80.00%");
    assert_eq!(failing[3], "❌ fail");
    assert!(failing[4].contains("< min 80.00%"), "{failing:?}");
    let drop = row(&md, "drop[fgsm, eps=0.1]");
    let fgsm = r.results.iter().find(|x| x.attack == "fgsm" && x.eps == 0.1).unwrap();
    assert_eq!(drop[1], format!("{:.2} pp", fgsm.drop_pp));
    assert_eq!(drop[2], "≤ 100 pp");
    assert_eq!(drop[3], "✅ pass");
    assert!(md.contains(&format!("Clean accuracy: **{}** ({}/{N})", pct(r.clean_accuracy), r.clean_correct)));
    // Robust accuracy: attacks × ε, as in the report.
    assert_eq!(row(&md, "attack"), ["attack", "ε=0.1", "ε=0.3"]);
    for attack in ["fgsm", "pgd", "fmn"] {
        let expected: Vec<String> = std::iter::once(attack.to_string())
            .chain(r.results.iter().filter(|x| x.attack == attack).map(|x| pct(x.robust_accuracy)))
            .collect();
        assert_eq!(row(&md, attack), expected);
    }
    let worst_row: Vec<String> = std::iter::once("**worst case**".to_string())
        .chain(r.worst_case.iter().map(|w| format!("**{}**", pct(w.robust_accuracy))))
        .collect();
    assert_eq!(row(&md, "**worst case**"), worst_row);
    // Checks, with `|` in a detail escaped.
    let warn = md.lines().find(|l| l.contains("`synthetic_warn`")).unwrap();
    assert_eq!(cells(warn), ["⚠️ WARN", "`synthetic_warn`", "a \\| b &lt;c> & \"d\""]);
    assert!(md.contains("| ❌ FAIL | `synthetic_fail` | 12 of 40 \\| see &lt;docs> |"));
    // Provenance, shortened.
    let p = r.provenance.as_ref().unwrap();
    assert!(md.contains(&format!("`{}…`", &p.config_sha256[..12])));
    assert!(md.contains(&format!("`{}…`", &p.model_files[0].sha256[..12])));
    assert!(md.contains("`0123456789ab…-dirty`"));
    assert!(md.contains(&format!("gauntlet {}", env!("CARGO_PKG_VERSION"))));

    // A passing gate, and no gate.
    let mut ok = r.clone();
    let g = ok.gate.as_mut().unwrap();
    g.rules.retain(|v| v.passed);
    g.passed = true;
    let passed = g.rules.len();
    let md = markdown::summary(&ok);
    assert!(md.starts_with(&format!("## ✅ PASS — Gauntlet release gate ({passed} rules passed)")), "{md}");
    ok.gate = None;
    ok.provenance = None;
    let md = markdown::summary(&ok);
    assert!(md.lines().next().unwrap().contains("no gate"));
    assert!(!md.contains("### Gate"));
    assert_tables_are_rectangular(&md);
}

#[test]
fn leaderboard_ranks_by_worst_case_at_the_largest_eps() {
    let base = &fixture().report;
    let mut strong = base.clone();
    strong.clean_accuracy = 0.9;
    strong.worst_case.last_mut().unwrap().robust_accuracy = 0.75;
    strong.run.time_s = 12.34;
    let mut middle = base.clone();
    middle.worst_case.last_mut().unwrap().robust_accuracy = 0.5;
    // Higher at the small ε, lower at the largest: ranked below `middle`.
    let mut weak = base.clone();
    weak.worst_case[0].robust_accuracy = 0.99;
    weak.worst_case.last_mut().unwrap().robust_accuracy = 0.25;
    let entries = vec![
        ("weak | model".to_string(), &weak),
        ("baseline".to_string(), base),
        ("strong".to_string(), &strong),
        ("middle".to_string(), &middle),
    ];
    let md = markdown::leaderboard(&entries);
    assert_tables_are_rectangular(&md);
    let rows: Vec<Vec<String>> = md.lines().filter(|l| l.starts_with("| ")).map(cells).collect();
    assert_eq!(
        rows[0],
        [
            "rank",
            "model",
            "clean",
            "fgsm ε=0.1",
            "fgsm ε=0.3",
            "pgd ε=0.1",
            "pgd ε=0.3",
            "fmn ε=0.1",
            "fmn ε=0.3",
            "worst ε=0.1",
            "worst ε=0.3",
            "time"
        ]
    );
    let names: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    let base_last = pct(base.worst_case.last().unwrap().robust_accuracy);
    assert!(base.worst_case.last().unwrap().robust_accuracy < 0.25, "PGD at 0.3 leaves {base_last}");
    assert_eq!(names, ["strong", "middle", "weak \\| model", "baseline"]);
    let ranks: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ranks, ["1", "2", "3", "4"]);
    let top = &rows[1];
    assert_eq!(top[2], "90.00%");
    assert_eq!(top[3], pct(base.results[0].robust_accuracy));
    assert_eq!(top[10], "**75.00%**");
    assert_eq!(top[11], "12.3 s");
    assert_eq!(rows[4][10], format!("**{base_last}**"));
}

// ---------------------------------------------------------------------------------------------
// Certified robustness (`--certify`)

/// The fixture's sample records with made-up certificates, and the report with the certified rows
/// they imply: CROWN proves every robust sample but every fourth, IBP none. Every status follows
/// the attacks (a sample an attack broke, or a misclassified one, is `broken`); every fourth broken
/// sample has an infinite margin (written as null).
fn certified_fixture() -> (Report, Vec<SampleRecord>) {
    let f = fixture();
    let mut report = f.report.clone();
    let mut records = f.ev.sample_records();
    for (m, method) in ["crown", "ibp"].into_iter().enumerate() {
        for (k, &eps) in report.eps.clone().iter().enumerate() {
            let mut counts = [0usize; 3];
            for rec in &mut records {
                let status = if !rec.robust[k] {
                    CertStatus::Broken
                } else if method == "crown" && rec.index % 4 != 3 {
                    CertStatus::Certified
                } else {
                    CertStatus::Open
                };
                let margin = match status {
                    CertStatus::Certified => 0.5,
                    CertStatus::Open => -1.25,
                    CertStatus::Broken if rec.index % 4 == 0 => f32::NEG_INFINITY,
                    CertStatus::Broken => -3.0,
                };
                counts[status as usize] += 1;
                rec.certificates.push(SampleCertificate { method: method.into(), eps, status, margin });
            }
            let worst = &report.worst_case[k];
            let [certified, broken, open] = counts;
            assert_eq!(broken, N - worst.robust);
            report.certified.push(CertifiedRow {
                method: method.into(),
                norm: Norm::Linf,
                eps,
                certified_accuracy: certified as f64 / N as f64,
                certified,
                broken,
                open,
                robust_accuracy: worst.robust_accuracy,
                gap: worst.robust_accuracy - certified as f64 / N as f64,
                time_s: [0.5, 2.0][m],
            });
        }
    }
    (report, records)
}

#[test]
fn certified_rows_in_every_format() {
    let (r, records) = certified_fixture();
    let crown = r.certified.iter().find(|c| c.method == "crown" && c.eps == 0.1).unwrap();
    assert!(crown.certified > 0 && crown.open > 0, "the fixture needs certified and open samples: {crown:?}");
    assert!(r.certified.iter().all(|c| c.gap >= 0.0));

    // report.json and samples.jsonl match their schemas, certified rows and certificates included.
    let json: Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["certified"].as_array().unwrap().len(), 4);
    assert_eq!(json["certified"][0]["method"], "crown");
    check_report(&json).unwrap_or_else(|e| panic!("certified rows do not match the schema:\n{e}"));
    // A gate rule on the certified accuracy is recorded like the other accuracy rules.
    let mut gated = r.clone();
    let gate =
        Gate::parse("[[rule]]\nmetric = \"certified_accuracy\"\nmethod = \"crown\"\neps = 0.1\nmin = 0.5\n").unwrap();
    gated.gate = Some(gate.evaluate("gate.toml", &gated, None));
    let verdict = &gated.gate.as_ref().unwrap().rules[0];
    assert_eq!(verdict.value, Some(crown.certified_accuracy));
    check_report(&serde_json::to_value(&gated).unwrap())
        .unwrap_or_else(|e| panic!("a certified-accuracy rule does not match the schema:\n{e}"));
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: [Mutation; 5] = [
        ("method deepz", |v| v["certified"][0]["method"] = json!("deepz")),
        ("certified_accuracy 1.5", |v| v["certified"][0]["certified_accuracy"] = json!(1.5)),
        ("open -1", |v| v["certified"][1]["open"] = json!(-1)),
        ("an unknown field in a row", |v| v["certified"][0]["verified"] = json!(3)),
        ("no gap", |v| {
            v["certified"][2].as_object_mut().unwrap().remove("gap");
        }),
    ];
    for (what, mutate) in mutations {
        let mut bad = json.clone();
        mutate(&mut bad);
        assert!(check_report(&bad).is_err(), "the schema accepted a report with {what}");
    }
    let (schemas, index) = compile("docs/samples.schema.json");
    let lines: Vec<Value> = samples::to_jsonl(&records).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (i, v) in lines.iter().enumerate() {
        schemas.validate(v, index).unwrap_or_else(|e| panic!("samples.jsonl line {}: {e:#}\n{v}", i + 1));
    }
    assert!(lines.iter().all(|v| v["certificates"].as_array().unwrap().len() == 4));
    let infinite = lines
        .iter()
        .find(|v| v["index"].as_u64().unwrap() % 4 == 0 && v["certificates"][0]["status"] == "broken")
        .expect("a broken sample with an infinite margin");
    assert_eq!(infinite["certificates"][0]["margin"], Value::Null, "an infinite margin is written as null");
    let certified = lines.iter().find(|v| v["certificates"][0]["status"] == "certified").unwrap();
    assert_eq!(certified["certificates"][0]["margin"], json!(0.5));
    let mut bad = certified.clone();
    bad["certificates"][0]["status"] = json!("proven");
    assert!(schemas.validate(&bad, index).is_err(), "accepted status proven");
    let mut bad = certified.clone();
    bad["certificates"][1].as_object_mut().unwrap().remove("margin");
    assert!(schemas.validate(&bad, index).is_err(), "accepted a certificate without margin");
    // A misclassified sample: every certificate broken, none certified.
    let mut wrong = certified.clone();
    (wrong["correct"], wrong["robust"], wrong["results"]) = (json!(false), json!([false, false]), json!([]));
    for c in wrong["certificates"].as_array_mut().unwrap() {
        c["status"] = json!("broken");
    }
    schemas.validate(&wrong, index).unwrap_or_else(|e| panic!("{e:#}"));
    wrong["certificates"][0]["status"] = json!("certified");
    assert!(schemas.validate(&wrong, index).is_err(), "accepted a misclassified sample as certified");

    // Markdown: the section, the bounds in words, one row per method × ε in the file's percentages.
    let md = markdown::summary(&r);
    assert_tables_are_rectangular(&md);
    assert!(md.contains("### Certified robustness\n"), "{md}");
    assert!(md.contains("Certified accuracy is a proven lower bound on the true robust accuracy"), "{md}");
    assert!(md.contains("the attacks' robust accuracy is an upper bound"), "{md}");
    assert!(md.find("### Certified robustness").unwrap() < md.find("### Integrity checks").unwrap());
    assert_eq!(
        row(&md, "method"),
        ["method", "norm", "ε", "certified accuracy", "attacks' robust accuracy", "gap (pp)", "open", "time"]
    );
    let md_rows: Vec<Vec<String>> =
        md.lines().filter(|l| l.starts_with("| crown ") || l.starts_with("| ibp ")).map(cells).collect();
    assert_eq!(md_rows.len(), 4);
    for (cells, c) in md_rows.iter().zip(&r.certified) {
        let expected = [
            c.method.clone(),
            "linf".into(),
            if c.eps == 0.1 { "0.1" } else { "0.3" }.into(),
            format!("**{}** ({}/{N})", pct(c.certified_accuracy), c.certified),
            pct(c.robust_accuracy),
            format!("{:.2}", c.gap * 100.0),
            c.open.to_string(),
            if c.method == "crown" { "0.5 s" } else { "2.0 s" }.into(),
        ];
        assert_eq!(cells, &expected);
    }
    assert_eq!(md_rows[2][3], "**0.00%** (0/40)", "IBP proves nothing here");
    assert_eq!(md_rows[2][5], format!("{:.2}", r.worst_case[0].robust_accuracy * 100.0));
    assert!(!markdown::summary(&fixture().report).contains("Certified robustness"));

    // JUnit: a passing suite of one test case per row, the numbers in its output; still valid.
    let xml = junit::render(&r);
    xmllint(&xml, "certified");
    let c = suite(&xml, "gauntlet.certified");
    assert_eq!(attribute(c, "tests"), "4");
    assert_eq!(attribute(c, "failures"), "0");
    assert_eq!(attribute(c, "time"), "5.000");
    assert_eq!(c.matches("<testcase ").count(), 4);
    assert!(c.contains("<testcase name=\"crown linf eps 0.1\" classname=\"gauntlet.certified\" time=\"0.500\"/>"));
    assert!(!c.contains("<failure"));
    for row in &r.certified {
        let line = format!(
            "{} linf eps {}: certified accuracy {} ({}/{N}), attacks' robust accuracy {}, gap {:.2} pp, {} broken, {} open",
            row.method,
            if row.eps == 0.1 { "0.1" } else { "0.3" },
            pct(row.certified_accuracy),
            row.certified,
            pct(row.robust_accuracy),
            row.gap * 100.0,
            row.broken,
            row.open
        );
        assert!(c.contains(&line), "no {line:?} in\n{c}");
    }
    assert!(c.contains("ibp linf eps 0.3: certified accuracy 0.00% (0/40)"), "{c}");
    // The gate's and the checks' suites are unchanged.
    let gate = r.gate.as_ref().unwrap();
    assert_eq!(xml.matches("<testcase ").count(), gate.rules.len() + r.checks.len() + 4);
    assert_eq!(xml.matches("<testsuite ").count(), 3);
    // Without gate and checks: the evaluation summary, then the certified suite.
    let mut bare = r.clone();
    (bare.gate, bare.checks) = (None, Vec::new());
    let xml = junit::render(&bare);
    xmllint(&xml, "certified-bare");
    assert_eq!(xml.matches("<testsuite ").count(), 2);
    assert!(xml.find("<testcase name=\"evaluation\"").unwrap() < xml.find("gauntlet.certified").unwrap());

    // HTML: the table and, in the robust-accuracy plot, each method's curve and the shaded gap.
    let doc = html::report(&r, &records, &[]);
    assert!(doc.contains("<h2>Certified robustness</h2>"));
    assert!(doc.contains("proven lower bound on the true robust accuracy"));
    let crown_row = format!(
        "<tr class=\"certified\"><td>crown (L∞)</td><td class=\"num\">0.1</td><td class=\"num\">{}<span class=\"bar\">",
        pct(crown.certified_accuracy)
    );
    assert!(doc.contains(&crown_row), "no {crown_row:?}");
    assert_eq!(doc.matches("<tr class=\"certified\">").count(), 4);
    assert!(doc.contains(&format!("<td class=\"num\">{}/{N}</td>", crown.certified)));
    let svg = plots::robust_curve_svg(&r);
    for label in [plots::GAP_LABEL, "crown (certified)", "ibp (certified)"] {
        assert!(svg.contains(&format!(">\n{label}\n</text>")), "no legend {label:?}");
        assert!(doc.contains(label), "no legend {label:?} in the HTML");
    }
    assert_eq!(svg.matches("<polygon").count(), 1, "one gap band");
    assert!(svg.to_ascii_lowercase().contains(&format!("fill=\"{}\"", plots::GAP_COLOR)));
    assert!(!plots::robust_curve_svg(&fixture().report).contains(plots::GAP_LABEL));
}
