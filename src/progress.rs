//! Progress bars with ETA (hidden automatically when stderr is not a terminal, so logs and
//! tests stay clean).

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// A set of progress bars for one command.
#[derive(Clone, Default)]
pub struct Progress {
    multi: MultiProgress,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            multi: MultiProgress::new(),
        }
    }

    /// A counting bar: `label [=====>    ] 12/40 ETA 3s  message`.
    pub fn bar(&self, label: &str, len: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:30.cyan/blue}] {pos}/{len} ETA {eta}  {msg}",
        )
        .expect("static template")
        .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar
    }

    /// A byte-counting bar.
    pub fn bytes(&self, label: &str, len: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("static template")
        .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar
    }
}
