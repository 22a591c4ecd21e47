//! Ctrl-C and SIGTERM: the first asks the run to stop before its next batch (finished batches
//! stay in the checkpoint); the second ends the process at once (the checkpoint is consistent at
//! every moment, as every file is renamed into place whole).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::ExitStatus;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler; the first signal sets the flag [`requested`] reads.
pub fn install() {
    let result = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: stopping now");
            std::process::exit(ExitStatus::Interrupted.code());
        }
        eprintln!("\nstopping after the current batch (press Ctrl-C again to stop at once)…");
    });
    if let Err(e) = result {
        eprintln!("warning: Ctrl-C will end the run without a clean stop ({e})");
    }
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
