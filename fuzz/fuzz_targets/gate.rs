//! The gate file parser on arbitrary text.
#![no_main]

use gauntlet::gate::Gate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Gate::parse(text);
    }
});
