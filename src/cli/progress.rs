//! The progress bar on stderr (indicatif), hidden when stderr is not a terminal or with `--quiet`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::eval::Progress;

/// The progress bar, and the stage lines (`running integrity checks…`) unless `--quiet`.
pub struct Bar {
    bar: ProgressBar,
    quiet: bool,
}

impl Bar {
    pub fn new(quiet: bool) -> Bar {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:>8} [{bar:30}] {pos}/{len} samples · {elapsed} (eta {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Bar { bar, quiet }
    }
}

impl Progress for Bar {
    fn start(&self, total: u64) {
        self.bar.set_length(total);
    }
    fn advance(&self, done: u64, message: &str) {
        self.bar.set_message(message.to_string());
        self.bar.inc(done);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
    fn stage(&self, what: &str) {
        if !self.quiet {
            eprintln!("{what}…");
        }
    }
    fn cancelled(&self) -> bool {
        super::interrupt::requested()
    }
}
