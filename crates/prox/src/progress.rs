//! How commands show progress: a bar on standard error when it is a terminal, log lines every
//! so often otherwise (under Slurm, in a log file). Libraries only report, through their
//! `Reporter` traits; the commands' reporters draw with this.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over a known total, or periodic log lines.
pub struct Progress {
    bar: ProgressBar,
    terminal: bool,
    /// Off a terminal: the time between log lines; `None` for no log lines.
    log_every: Option<Duration>,
    last_line: Mutex<Instant>,
}

/// A bar of bytes, in binary units with the rate.
pub const BYTES: &str =
    "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg} eta {eta}";

impl Progress {
    /// A bar of `total` drawn with `template` on a terminal; off one, a log line of the message
    /// every `log_every`, or nothing when it is `None`.
    pub fn new(total: u64, template: &str, log_every: Option<Duration>) -> Self {
        Self::drawn_if(std::io::stderr().is_terminal(), total, template, log_every)
    }

    /// [`Progress::new`], drawn as a bar when `terminal` (the caller's decision).
    pub fn drawn_if(
        terminal: bool,
        total: u64,
        template: &str,
        log_every: Option<Duration>,
    ) -> Self {
        let bar = if terminal {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Progress {
            bar,
            terminal,
            log_every,
            last_line: Mutex::new(Instant::now()),
        }
    }

    pub fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }

    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// The total given at the start.
    pub fn length(&self) -> u64 {
        self.bar.length().unwrap_or(0)
    }

    /// Starts at `position`: work an earlier run did, which the rate and ETA leave out.
    pub fn start_at(&self, position: u64) {
        self.bar.set_position(position);
        self.bar.reset_eta();
    }

    /// Shows `message()` beside the bar, or logs it when a log line is due.
    pub fn message(&self, message: impl FnOnce() -> String) {
        if self.terminal {
            self.bar.set_message(message());
            return;
        }
        let Some(every) = self.log_every else {
            return;
        };
        let Ok(mut last_line) = self.last_line.lock() else {
            return;
        };
        if last_line.elapsed() >= every {
            *last_line = Instant::now();
            tracing::info!("progress: {}", message());
        }
    }

    /// Shows `line()` beside the bar; off a terminal, logs it when `due`: for reports whose
    /// log lines follow a cadence of their own (every N training steps) rather than the clock.
    pub fn line(&self, due: bool, line: impl FnOnce() -> String) {
        if self.terminal {
            self.bar.set_message(line());
        } else if due {
            tracing::info!("{}", line());
        }
    }

    /// Runs `log` only off a terminal: lines (a file started, a batch stored) that the bar
    /// already shows.
    pub fn unless_drawn(&self, log: impl FnOnce()) {
        if !self.terminal {
            log();
        }
    }

    /// Runs `log` (a warning, say) with the bar out of the way.
    pub fn suspend(&self, log: impl FnOnce()) {
        self.bar.suspend(log);
    }

    /// Takes the bar off the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
