//! Progress of a submission: an indicatif bar (rows/s, ETA) when stdout is a terminal, a plain line
//! every few seconds otherwise (logs, CI), nothing with `--quiet`. Everything goes to stderr, so
//! stdout keeps only the summary.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is written.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// Where progress goes.
#[derive(Debug)]
pub enum Progress {
    Bar(ProgressBar),
    Lines {
        total: u64,
        started: Instant,
        state: Mutex<(u64, Instant)>,
    },
    Quiet,
}

impl Progress {
    pub fn new(total_rows: u64, quiet: bool) -> Self {
        if quiet {
            return Self::Quiet;
        }
        if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total_rows), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            return Self::Bar(bar);
        }
        let now = Instant::now();
        Self::Lines {
            total: total_rows,
            started: now,
            state: Mutex::new((0, now)),
        }
    }

    /// `rows` more rows were judged by the service.
    pub fn advance(&self, rows: u64) {
        match self {
            Self::Bar(bar) => bar.inc(rows),
            Self::Lines {
                total,
                started,
                state,
            } => {
                let Ok(mut state) = state.lock() else { return };
                state.0 += rows;
                if state.1.elapsed() >= LINE_EVERY || state.0 == *total {
                    state.1 = Instant::now();
                    eprintln!("{}", line(state.0, *total, started.elapsed()));
                }
            }
            Self::Quiet => {}
        }
    }

    pub fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn line(done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    #[expect(
        clippy::cast_precision_loss,
        reason = "row counts far below 2^52; a rate for people"
    )]
    let (rate, percent) = (
        done as f64 / secs,
        done as f64 * 100.0 / total.max(1) as f64,
    );
    format!("progress: {done}/{total} rows ({percent:.0}%), {rate:.0} rows/s")
}
