//! Logging: `tracing` to stdout, JSON when `LOG_FORMAT=json`, filtered by `RUST_LOG`
//! (default `info`). Request spans carry a request id; no request body or patient data is ever
//! put in a log line or span field.

use tracing_subscriber::EnvFilter;

/// The target of the one start-up line (`listening`, with the bound addresses), always enabled.
pub const STARTUP_TARGET: &str = "mediflow_startup";
const STARTUP_TARGET_DIRECTIVE: &str = "mediflow_startup=info";

/// Keeps the log writer thread alive; dropping it flushes what is buffered.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

/// Installs the global subscriber; call once at start and keep the guard until exit.
///
/// Lines go through a writer thread (`tracing_appender::non_blocking`), so a request never waits
/// for stdout: one `write(2)` per access line cost a third of GET throughput (BENCHMARKS.md). The
/// buffer is lossy only under a flood (a log line is dropped, never a request delayed).
pub fn init(json: bool) -> LogGuard {
    // The default buffer (128,000 lines) is allocated and touched at start: 4 MB and a few ms of
    // start time (measured with strace). 8,192 lines hold far more than one scrape interval.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(8192)
        .finish(std::io::stdout());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,typespec_client_core=warn,azure_core=warn"))
        // The start-up line with the bound addresses is written whatever `RUST_LOG` says: tests,
        // scripts and operators read the real ports from it.
        .add_directive(STARTUP_TARGET_DIRECTIVE.parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    installed.ok().map(|()| guard)
}
