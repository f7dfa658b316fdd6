//! `harness run`: the floor-versus-service benchmark, in one run (BENCHMARKS.md says what each
//! figure means).
//!
//! 0. The device: append + `fdatasync` latency in the temp dir, where the data dirs live.
//! 1. Start: `rounds` rounds in which hyperfine times `harness probe` (exec to the first 200 on
//!    `/health`, and `/ready` for the service) for the floor and the service, unpinned, and the
//!    probe alone; the start target is the median of the rounds' ratios.
//! 2. Saturation: `rounds` rounds, each starting the floor, the durable floor, the store floor
//!    and the service afresh, server pinned to CPU 1: warm-up POSTs from `harness post` (their ids kept), then oha
//!    on CPU 0 for `POST /records` and for `GET /records/{id}` over the warm-up's ids. Peak RSS
//!    (VmHWM) and RSS after the load (VmRSS) from /proc; for the service, its own request counts
//!    (`/metrics`) must match what the load generators counted.
//! 3. Same load: the same rounds at half the service's median saturated rate, for all four, oha
//!    with latency correction.
//! 4. In process, one core: the criterion benches (`benches/in_process.rs`), pinned to CPU 1.
//! 5. End to end through Azurite, when `tests/emulators` is installed.
//! 6. Overload: 32 and 512 connections of `harness post` against a fresh service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::{Level, RECORD_BODY};
use crate::report::{Envelope, Figures, InProcess, Report, StartTimes, median};
use crate::servers::{API_KEY, Binaries, Server, Target, pinned, service_env};
use crate::tools::{self, Phase};

/// oha's arguments for `POST /records` with the record body (the URL follows).
const POST_ARGS: [&str; 6] = ["-m", "POST", "-T", "application/json", "-d", RECORD_BODY];

/// What `harness run` is told.
#[derive(Debug, clap::Args)]
pub struct Settings {
    /// 4 connections, 0.5 s per phase, 1 round, short in-process benches: proves the pipeline
    /// and that the counts add up; judges nothing.
    #[arg(long)]
    pub smoke: bool,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The criterion bench executable of `benches/in_process.rs` (scripts/bench.sh builds it).
    #[arg(long)]
    in_process_bench: PathBuf,
    #[arg(long, default_value = "oha")]
    oha: PathBuf,
    #[arg(long, default_value = "hyperfine")]
    hyperfine: PathBuf,
    /// Another build of the service to measure against the floors of this run (default: the
    /// `handler` next to this binary).
    #[arg(long)]
    handler: Option<PathBuf>,
    /// Connections of every load phase.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Each load phase, in ms; the warm-up is a fifth of it.
    #[arg(long, default_value_t = 10_000)]
    duration_ms: u64,
    /// Rounds alternating floor, durable floor, service.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// No CPU pinning (otherwise: servers on CPU 1, load generators on CPU 0, on two cores).
    #[arg(long)]
    no_pin: bool,
    #[arg(skip)]
    pub server_cpu: Option<u32>,
    #[arg(skip)]
    load_cpu: Option<u32>,
}

impl Settings {
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms)
    }

    /// The warm-up before each load run, a fifth of a phase (2 s in a full run).
    pub fn warmup(&self) -> Duration {
        self.duration() / 5
    }

    /// A full run's figure, or the smoke run's.
    fn pick<T>(&self, full: T, smoke: T) -> T {
        if self.smoke { smoke } else { full }
    }
}

pub fn progress(line: &str) {
    eprintln!("bench: {line}");
}

/// Runs the benchmark; the report goes to stdout and to `--out`.
#[expect(clippy::print_stdout, reason = "the report is the output")]
pub fn run(mut s: Settings) -> Result<(), String> {
    if s.smoke {
        (s.connections, s.duration_ms, s.rounds) = (4, 500, 1);
    }
    let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let taskset = std::process::Command::new("taskset").arg("-V").output();
    if two_cores && taskset.is_ok_and(|o| o.status.success()) && !s.no_pin {
        (s.server_cpu, s.load_cpu) = (Some(1), Some(0));
    }
    let own = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let keys = tempfile::NamedTempFile::new().map_err(|e| format!("key file: {e}"))?;
    std::fs::write(keys.path(), format!("{API_KEY}\n")).map_err(|e| format!("key file: {e}"))?;
    let handler = s.handler.clone();
    let bins = Binaries {
        floor: own.with_file_name("floor"),
        handler: handler.unwrap_or_else(|| own.with_file_name("handler")),
        harness: own.clone(),
        key_file: keys.path().to_owned(),
    };
    for bin in [&bins.floor, &bins.handler, &s.in_process_bench] {
        if !bin.is_file() {
            return Err(format!(
                "{} is missing: scripts/bench.sh builds it",
                bin.display()
            ));
        }
    }
    progress(&format!("{s:?}"));
    let device = crate::device::fsync(&std::env::temp_dir(), s.pick(1000, 50), 200)?;
    progress(&format!("device: {device:?}"));
    let bench = Bench { s, bins };
    let start = (0..bench.s.rounds)
        .map(|_| bench.start_times())
        .collect::<Result<Vec<_>, _>>()?;
    progress(&format!("start: {start:?}"));
    let mut memory = [[0; 2]; Target::LOAD.len()];
    let saturated = bench.load_rounds(None, &mut memory)?;
    let half = |phases: &[Phase]| (median(phases.iter().map(|p| p.rps)) / 2.0).max(1.0);
    let service = Target::Service as usize;
    let rates = (
        half(&saturated[service].post),
        half(&saturated[service].get),
    );
    let paced = bench.load_rounds(Some(rates), &mut memory)?;
    let Bench { s, bins, .. } = &bench;
    let in_process = in_process(s)?;
    let azurite = crate::azurite::run(bins, s.pick(100, 3))?;
    let mut overload = Vec::new();
    for connections in [32, 512] {
        let server = Server::start(Target::Service, bins, s.server_cpu)?;
        let time = Duration::from_millis(s.pick(5000, 500));
        let level = bench.post(server.addr, connections, time, None)?;
        let (created, slack) = (level.count(201), connections as u64);
        agree(server.addr, ["/records", "POST", "201"], created, slack)?;
        progress(&format!("overload: {level:?}"));
        overload.push(level);
    }
    let report = Report {
        plan: s,
        device,
        start: &start,
        saturated: &saturated,
        paced: &paced,
        rates,
        memory,
        in_process: &in_process,
        azurite: azurite.as_ref(),
        overload: &overload,
    }
    .render();
    println!("{report}");
    if let Some(path) = &s.out {
        std::fs::write(path, &report).map_err(|e| format!("--out {}: {e}", path.display()))?;
    }
    Ok(())
}

/// What every step needs: the settings and the binaries (this one among them: `harness post`,
/// `probe`, `store-floor`).
#[derive(Debug)]
struct Bench {
    s: Settings,
    bins: Binaries,
}

impl Bench {
    /// One round of starts: hyperfine's medians of `harness probe` for each server, less the
    /// probe's own cost.
    fn start_times(&self) -> Result<StartTimes, String> {
        let scratch = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let data = scratch.path().join("data");
        let text = |path: &Path| path.to_string_lossy().into_owned();
        let own = text(&self.bins.harness);
        let probe = |path: &str, server: &[String]| {
            let probe = [&own, "probe", "--path", path, "--"].map(String::from);
            [&probe, server].concat()
        };
        let (floor, service) = (
            [text(&self.bins.floor), "127.0.0.1:0".into()],
            [text(&self.bins.handler)],
        );
        let commands = [
            ("probe alone", vec![own.clone(), "probe".into()]),
            ("floor /health", probe("/health", &floor)),
            ("service /health", probe("/health", &service)),
            ("service /ready", probe("/ready", &service)),
        ];
        // Every start gets an empty data dir, as a fresh pod would.
        let prepare = ["rm".into(), "-rf".into(), text(&data)];
        let env = |command: &mut _| service_env(command, &data, &self.bins.key_file);
        // 15 runs in each of the rounds: with one round of 5, the ratio of two medians moved
        // 1.66–2.14× between identical runs; with one of 40, the unchanged floor alone started in
        // 0.93 ms in one run and 1.56 ms in another, 36 minutes later.
        let (hyperfine, runs) = (&self.s.hyperfine, self.s.pick(15, 2));
        let medians = tools::hyperfine(hyperfine, runs, &commands, &prepare, env)?;
        let [probe, floor, service, ready] = medians[..] else {
            return Err("hyperfine: not four medians".into());
        };
        if [floor, service, ready].iter().any(|&ms| ms <= probe) {
            return Err(format!(
                "a start no longer than the probe alone: {medians:?}"
            ));
        }
        let (floor, service, ready) = (floor - probe, service - probe, ready - probe);
        Ok(StartTimes {
            probe,
            floor,
            service,
            ready,
        })
    }

    /// Every round: each target started afresh and loaded; `rates`: the fixed (POST, GET) rates.
    /// `memory`: each target's worst (VmHWM, VmRSS) so far.
    fn load_rounds(
        &self,
        rates: Option<(f64, f64)>,
        memory: &mut [[u64; 2]; Target::LOAD.len()],
    ) -> Result<[Figures; Target::LOAD.len()], String> {
        let s = &self.s;
        let mut figures: [Figures; Target::LOAD.len()] = Default::default();
        for round in 0..s.rounds {
            for (slot, target) in Target::LOAD.into_iter().enumerate() {
                let server = Server::start(target, &self.bins, s.server_cpu)?;
                let failed = |e| format!("load against the {}: {e}", target.name());
                let urls = tempfile::NamedTempFile::new().map_err(|e| format!("temp file: {e}"))?;
                let addr = server.addr;
                let warmup = self.post(addr, s.connections, s.warmup(), Some(urls.path()))?;
                if warmup.count(201) == 0 || warmup.statuses.len() > 1 || warmup.errors > 0 {
                    return Err(failed(format!("the warm-up was not all 201: {warmup:?}")));
                }
                let load = |target: Vec<&str>, rate: Option<f64>, expect| {
                    let mut args = vec![format!("-z={}ms", s.duration_ms)];
                    args.push(format!("-H=x-api-key: {API_KEY}"));
                    args.extend(rate.map(|rate| format!("-q={rate:.1}")));
                    args.extend(rate.map(|_| "--latency-correction".to_owned()));
                    args.extend(target.into_iter().map(str::to_owned));
                    let connections = s.connections as u64;
                    tools::oha(&s.oha, s.load_cpu, connections, &args, expect).map_err(failed)
                };
                let (records, urls) = (
                    format!("http://{addr}/records"),
                    urls.path().to_string_lossy(),
                );
                let post = load(
                    [&POST_ARGS[..], &[&records]].concat(),
                    rates.map(|r| r.0),
                    201,
                )?;
                let get = load(vec!["--urls-from-file", &urls], rates.map(|r| r.1), 200)?;
                if target == Target::Service {
                    let (bound, created) =
                        (s.connections as u64, warmup.count(201) + post.answered);
                    agree(addr, ["/records", "POST", "201"], created, 2 * bound)?;
                    agree(addr, ["/records/{id}", "GET", "200"], get.answered, bound)?;
                }
                let (peak, after) = server.memory()?;
                let kind = if rates.is_some() {
                    "fixed-rate"
                } else {
                    "saturation"
                };
                let name = target.name();
                let (post_rps, post_p99, get_rps, get_p99) =
                    (post.rps, post.p99_us, get.rps, get.p99_us);
                progress(&format!(
                    "{kind} round {round}: {name} POST {post_rps:.0} req/s p99 {post_p99:.0} µs, GET {get_rps:.0} req/s p99 {get_p99:.0} µs"
                ));
                figures[slot].post.push(post);
                figures[slot].get.push(get);
                memory[slot] = [memory[slot][0].max(peak), memory[slot][1].max(after)];
            }
        }
        Ok(figures)
    }

    /// Runs `harness post` (pinned to the load generators' core) for `time`; `urls`: where it
    /// writes the GET URLs of the records it created.
    fn post(
        &self,
        addr: SocketAddr,
        connections: usize,
        time: Duration,
        urls: Option<&Path>,
    ) -> Result<Level, String> {
        let mut command = pinned(&self.bins.harness, self.s.load_cpu);
        let (addr, connections, ms) = (
            addr.to_string(),
            connections.to_string(),
            time.as_millis().to_string(),
        );
        command.args([
            "post",
            "--addr",
            &addr,
            "--connections",
            &connections,
            "--duration-ms",
            &ms,
        ]);
        if let Some(urls) = urls {
            command.arg("--urls").arg(urls);
        }
        let line = tools::json_output(&mut command)?;
        serde_json::from_value(line).map_err(|e| format!("harness post output: {e}"))
    }
}
/// Checks that the service answered `[route, method, status]` between `counted` and
/// `counted + slack` times (its own counter, from `/metrics`): answers that came after a phase's
/// end are the service's but not the load generator's, at most one per connection and phase.
fn agree(addr: SocketAddr, labels: [&str; 3], counted: u64, slack: u64) -> Result<(), String> {
    let (_, page) = crate::client::get(addr, "/metrics").ok_or("no answer on /metrics")?;
    let names = ["route", "method", "status"].iter().zip(labels);
    let labels: Vec<String> = names
        .map(|(name, value)| format!("{name}=\"{value}\""))
        .collect();
    let served: u64 = page
        .lines()
        .filter(|line| line.starts_with("mediflow_http_requests_total{"))
        .filter(|line| labels.iter().all(|label| line.contains(label.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    if (counted..=counted + slack).contains(&served) {
        return Ok(());
    }
    Err(format!(
        "{labels:?}: the service counted {served}, the load generators {counted} (at most {slack} more allowed)"
    ))
}

/// The criterion benches, pinned to the server's core, with their reports in a temp dir.
fn in_process(s: &Settings) -> Result<InProcess, String> {
    let home = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let short = ["--warm-up-time", "0.1", "--measurement-time", "0.2"];
    let (bench, extra) = (&s.in_process_bench, s.pick(&[][..], &short[..]));
    let mut criterion = pinned(bench, s.server_cpu);
    tools::run(
        criterion
            .args(["--bench", "--noplot"])
            .args(extra)
            .env("CRITERION_HOME", home.path()),
    )?;
    let mean = |group: &str, name: &str| tools::criterion_mean_ns(home.path(), group, name);
    let records = harness::RECORDS_PER_BATCH;
    #[expect(clippy::cast_precision_loss, reason = "record counts are small")]
    let per_second = |records: usize, ns: f64| records as f64 / (ns / 1e9);
    let mut envelopes = Vec::new();
    for count in [1, records] {
        envelopes.push(Envelope {
            records: count,
            bytes: harness::invocation(&harness::batch_message(count)).len(),
            invocation_ns: mean("envelope", &format!("envelope_{count}"))?,
            bare_ns: mean("envelope", &format!("bare_{count}"))?,
        });
    }
    Ok(InProcess {
        message_bytes: harness::batch_message(records).len(),
        one_at_a_time: per_second(records, mean("batch", "one_at_a_time")?),
        eight_at_a_time: per_second(8 * records, mean("batch", "eight_at_a_time")?),
        envelopes,
    })
}
