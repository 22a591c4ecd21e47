//! Files read back are untrusted: a report (`verify`, `diff`, `--baseline`) and a checkpoint's
//! manifest and batches (`--resume`, `merge`). Any bytes that parse as a report must render in
//! every format and compare with itself; any bytes that parse as a checkpoint batch and pass its
//! consistency check must build a report, records and a join with itself, without a panic.
#![no_main]

use gauntlet::eval::Evaluation;
use gauntlet::report::{diff, html, junit, markdown, DatasetInfo, Meta, ModelInfo, Report, RunInfo};
use gauntlet::run::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Report>(data) {
        let _ = r.to_table();
        let _ = r.to_json();
        let _ = markdown::summary(&r);
        let _ = junit::render(&r);
        let _ = html::report(&r, &[], &[]);
        let _ = diff::render(&r, &r, r.gate.clone().map(|g| (g.clone(), g)).as_ref());
        let _ = markdown::leaderboard(&[("m".to_string(), &r)]);
    }
    if let Ok(m) = serde_json::from_slice::<Manifest>(data) {
        let _ = m.blocks().take(100).count();
        let _ = m.differences(&m);
    }
    if let Ok(ev) = serde_json::from_slice::<Evaluation>(data) {
        if ev.check_consistent().is_err() || ev.samples() > 10_000 {
            return;
        }
        let meta = Meta {
            model: ModelInfo { source: "m".into(), input: [1, 1, 1], classes: 10, parameters: 0, preprocessing: "none".into() },
            dataset: DatasetInfo { source: "d".into(), samples: ev.samples() },
            seed: 0,
            bounds: [0.0, 1.0],
            run: RunInfo { device: "cpu".into(), threads: 1, batch_size: 1, time_s: 0.0, clean_time_s: 0.0 },
        };
        let r = Report::new(&ev, meta);
        let _ = r.to_json();
        let _ = ev.sample_records();
        let mut next = ev.clone();
        next.first = ev.first + ev.samples();
        let _ = Evaluation::concat(vec![ev, next], 4);
    }
});
