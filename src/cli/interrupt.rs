//! Ctrl-C and SIGTERM: the first asks the run to stop before its next batch (finished batches
//! stay in the checkpoint); the second ends the process at once (the checkpoint is consistent at
//! every moment, as every file is renamed into place whole).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::ExitStatus;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The embedding program handles signals itself and calls [`request`] (the Python package).
static OUTSIDE: AtomicBool = AtomicBool::new(false);

/// Signals are the embedding program's: [`install`] installs nothing, and the program asks for a
/// stop with [`request`]. Keeps a request made before the command started (see [`clear`]).
pub fn handled_outside() {
    OUTSIDE.store(true, Ordering::SeqCst);
}

/// Forgets an earlier stop request: an embedding program calls it before it starts a command,
/// so that a request made between then and the command's first batch still counts.
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
}

/// Asks the running command to stop before its next batch, as a first Ctrl-C does.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the handler (once per process); the first signal sets the flag [`requested`] reads.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if OUTSIDE.load(Ordering::SeqCst) {
        return;
    }
    ONCE.call_once(install_handler);
}

fn install_handler() {
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
