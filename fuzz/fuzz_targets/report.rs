//! A report read back (`verify`, `diff`, `--baseline`) is untrusted: any bytes that parse as a
//! report must render in every format and compare with itself without a panic.
#![no_main]

use gauntlet::report::{diff, html, junit, markdown, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = serde_json::from_slice::<Report>(data) else { return };
    let _ = r.to_table();
    let _ = r.to_json();
    let _ = markdown::summary(&r);
    let _ = junit::render(&r);
    let _ = html::report(&r, &[], &[]);
    let _ = diff::render(&r, &r, r.gate.clone().map(|g| (g.clone(), g)).as_ref());
    let _ = markdown::leaderboard(&[("m".to_string(), &r)]);
});
