//! `loadgen bench`: the floor-versus-service benchmark, in one run.
//!
//! 1. Start time: each server is started `start_reps` times, alternating, and timed from exec to
//!    the first 200 on `/health` (the service also to the first 200 on `/ready`: store open).
//! 0. The device: append + `fdatasync` latency in the temp dir (where the data dirs live), one
//!    at a time: the disk's own limit for a durable write.
//! 2. Saturation: `rounds` rounds, each starting the floor, the durable floor (the floor plus a
//!    group-committed, fsynced append per POST: `floor ADDR JOURNAL`) and the service afresh
//!    (service: standalone, embedded store in a fresh temp dir, API-key auth on), then driving it with a
//!    separate `loadgen load` process: warm-up POSTs (their ids are read back later), POST
//!    /records, GET /records/{id}, each phase with the same connections and duration. Server
//!    pinned to CPU 1, load generator to CPU 0 (`taskset`), when the machine has two cores.
//!    Peak RSS (VmHWM) and RSS after the load (VmRSS) are read from /proc after each run.
//! 3. Same load: the same rounds at a fixed request rate (half the service's median saturated
//!    rate, for all three), where p99 is compared (POST with the durable floor's, GET with the
//!    floor's).
//! 4. In process, on one core: batch ingestion records/s, and the invocation envelope's cost.
//! 5. End to end through Azurite, when `tests/emulators` is installed.
//! 6. Overload: 32 and 512 connections posting against the service (`overload`).
//!
//! `--smoke`: tiny durations and counts to prove the pipeline and the output work; no figure is
//! judged (a CI machine's speed proves nothing).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::probe;
use crate::{Args, emit};

/// The API key the service accepts during the benchmark.
const API_KEY: &str = "bench-key-0123456789";

/// Everything a run is set to do.
#[derive(Debug, Clone)]
struct Settings {
    smoke: bool,
    connections: usize,
    warmup_ms: u64,
    duration_ms: u64,
    rounds: usize,
    start_reps: usize,
    batch_records: usize,
    batch_count: usize,
    envelope_iterations: u32,
    azurite_batches: usize,
    pin: bool,
}

impl Settings {
    fn from_args(args: &Args) -> Result<Self, String> {
        let smoke = args.flag("smoke");
        let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
        let taskset = Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Ok(Self {
            smoke,
            connections: args.number("connections", if smoke { 4 } else { 32 })?,
            warmup_ms: args.number("warmup-ms", if smoke { 300 } else { 2000 })?,
            duration_ms: args.number("duration-ms", if smoke { 500 } else { 10_000 })?,
            rounds: args.number("rounds", if smoke { 1 } else { 3 })?,
            start_reps: args.number("start-reps", if smoke { 1 } else { 5 })?,
            batch_records: args.number("batch-records", 375)?,
            batch_count: args.number("batch-count", if smoke { 4 } else { 250 })?,
            envelope_iterations: args
                .number("envelope-iterations", if smoke { 20 } else { 2000 })?,
            azurite_batches: args.number("azurite-batches", if smoke { 3 } else { 100 })?,
            pin: two_cores && taskset && !args.flag("no-pin"),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Floor,
    DurableFloor,
    Service,
}

/// The load targets, in the order each round runs them (and the slots of the figures).
const LOAD_TARGETS: [Target; 3] = [Target::Floor, Target::DurableFloor, Target::Service];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Floor => "floor",
            Self::DurableFloor => "durable floor",
            Self::Service => "service",
        }
    }
}

/// The binaries next to this one (the same profile).
#[derive(Debug)]
struct Binaries {
    loadgen: PathBuf,
    floor: PathBuf,
    handler: PathBuf,
}

impl Binaries {
    /// `handler`: `--handler PATH`, another build of the service to measure (a before/after
    /// comparison runs the benchmark once per build, each against the floors of its own run).
    fn locate(handler: Option<&str>) -> Result<Self, String> {
        let loadgen = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let dir = loadgen.parent().ok_or("no binary directory")?.to_owned();
        let found = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} is missing: build with `cargo build -p handler -p floor -p loadgen` (scripts/bench.sh does)",
                    path.display()
                ))
            }
        };
        Ok(Self {
            floor: found("floor")?,
            handler: handler.map_or_else(|| found("handler"), |path| Ok(PathBuf::from(path)))?,
            loadgen,
        })
    }

    fn of(&self, target: Target) -> &Path {
        match target {
            Target::Floor | Target::DurableFloor => &self.floor,
            Target::Service => &self.handler,
        }
    }
}

/// A running server, stopped on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    _data: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `target`; `cpu`: pinned to that CPU with taskset.
    fn start(
        target: Target,
        bins: &Binaries,
        key_file: &Path,
        cpu: Option<u32>,
        extra_env: &[(&str, String)],
    ) -> Result<Self, String> {
        let addr = free_addr()?;
        let bin = bins.of(target);
        let mut command = pinned(bin, cpu);
        without_service_settings(&mut command);
        let data = match target {
            Target::Floor => {
                command.arg(addr.to_string());
                None
            }
            Target::DurableFloor => {
                let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
                command
                    .arg(addr.to_string())
                    .arg(data.path().join("journal"));
                Some(data)
            }
            Target::Service => {
                let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
                command
                    .env("MEDIFLOW_ADDR", addr.to_string())
                    .env("MEDIFLOW_DATA_DIR", data.path())
                    .env("MEDIFLOW_API_KEYS_FILE", key_file);
                for (name, value) in extra_env {
                    command.env(name, value);
                }
                Some(data)
            }
        };
        // The service logs one line per request at the default level, as in production; the
        // lines go to /dev/null here.
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        Ok(Self {
            child,
            addr,
            _data: data,
        })
    }

    /// Waits for the first 200 on `path`; the time since `since`.
    fn wait_for(&mut self, path: &str, since: Instant) -> Result<Duration, String> {
        let deadline = since + Duration::from_secs(60);
        loop {
            if probe(self.addr, path) == Some(200) {
                return Ok(since.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the server exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("no 200 on {path} within 60 s"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// (VmHWM, VmRSS) in bytes.
    fn memory(&self) -> Result<(u64, u64), String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| format!("/proc status: {e}"))?;
        let field = |name: &str| -> Result<u64, String> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024)
                .ok_or_else(|| format!("no {name} in /proc status"))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }
}

/// `program`, pinned to `cpu` with taskset when given.
pub fn pinned(program: &Path, cpu: Option<u32>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Nothing from the caller's environment may change what is measured: the service's own
/// settings, the Functions host's and the log settings are removed from `command`.
pub fn without_service_settings(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("MEDIFLOW_")
            || name.starts_with("FUNCTIONS_")
            || name.starts_with("AzureFunctionsJobHost")
            || name == "RUST_LOG"
            || name == "LOG_FORMAT"
        {
            command.env_remove(name);
        }
    }
}

pub fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("free port: {e}"))
}

/// One saturation or fixed-rate run's figures for one target.
#[derive(Debug, Clone, Default)]
struct LoadFigures {
    post: Vec<Phase>,
    get: Vec<Phase>,
    peak_rss: Vec<u64>,
    rss_after: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Phase {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Phase {
    fn from_json(value: &Value) -> Result<Self, String> {
        let number = |name: &str| {
            value[name]
                .as_f64()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("load output has no positive `{name}`: {value}"))
        };
        if value["errors"].as_u64() != Some(0) {
            return Err(format!("load output reports errors: {value}"));
        }
        Ok(Self {
            rps: number("rps")?,
            p50_us: number("p50_us")?,
            p99_us: number("p99_us")?,
        })
    }
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

fn max_u64(values: &[u64]) -> u64 {
    values.iter().copied().max().unwrap_or(0)
}

/// Runs the benchmark and prints the report (also to `--out FILE`).
pub fn run(args: &Args) -> Result<(), String> {
    let settings = Settings::from_args(args)?;
    let bins = Binaries::locate(args.string("handler"))?;
    let keys = tempfile::NamedTempFile::new().map_err(|e| format!("key file: {e}"))?;
    std::fs::write(keys.path(), format!("{API_KEY}\n")).map_err(|e| format!("key file: {e}"))?;
    let (server_cpu, load_cpu) = if settings.pin {
        (Some(1), Some(0))
    } else {
        (None, None)
    };
    progress(&format!("settings: {settings:?}"));

    // 0. The device's limit for a durable write, where the data dirs live.
    let temp = std::env::temp_dir();
    let device = self_json(
        &bins,
        server_cpu,
        &[
            "fsync",
            "--dir",
            &temp.to_string_lossy(),
            "--rounds",
            if settings.smoke { "50" } else { "1000" },
        ],
    )?;
    progress(&format!("device: {device}"));

    // 1. Start time.
    let (start, ready) = measure_start(&settings, &bins, keys.path())?;

    // 2. Saturation, alternating.
    let mut saturated: [LoadFigures; 3] = Default::default();
    for round in 0..settings.rounds {
        for (slot, target) in LOAD_TARGETS.into_iter().enumerate() {
            let figures = load_round(
                &settings,
                &bins,
                keys.path(),
                target,
                server_cpu,
                load_cpu,
                None,
            )?;
            progress(&format!(
                "saturation round {round}: {} POST {:.0} req/s, GET {:.0} req/s",
                target.name(),
                figures.post[0].rps,
                figures.get[0].rps
            ));
            merge(&mut saturated[slot], figures);
        }
    }

    // 3. The same fixed load on both: half the service's saturated rate.
    let rates = (
        (median(saturated[2].post.iter().map(|p| p.rps)) / 2.0).max(1.0),
        (median(saturated[2].get.iter().map(|p| p.rps)) / 2.0).max(1.0),
    );
    let mut paced: [LoadFigures; 3] = Default::default();
    for round in 0..settings.rounds {
        for (slot, target) in LOAD_TARGETS.into_iter().enumerate() {
            let figures = load_round(
                &settings,
                &bins,
                keys.path(),
                target,
                server_cpu,
                load_cpu,
                Some(rates),
            )?;
            progress(&format!(
                "fixed-rate round {round}: {} POST p99 {:.0} µs, GET p99 {:.0} µs",
                target.name(),
                figures.post[0].p99_us,
                figures.get[0].p99_us
            ));
            merge(&mut paced[slot], figures);
        }
    }

    // 4. In process, one core.
    let (batch_sequential, batch_concurrent, envelopes) =
        in_process(&settings, &bins, server_cpu.map(|_| 1))?;

    // 5. Azurite.
    let azurite = crate::azurite::run(
        &bins.handler,
        keys.path(),
        API_KEY,
        settings.batch_records,
        settings.azurite_batches,
    )?;

    // 6. Overload (issue 16): 32, then 512 connections.
    let overload = crate::overload::section(settings.smoke, server_cpu, load_cpu)?;
    let mut report = Report {
        settings: &settings,
        device: &device,
        start: &start,
        ready: &ready,
        saturated: &saturated,
        paced: &paced,
        rates,
        batch: [&batch_sequential, &batch_concurrent],
        envelopes: &envelopes,
        azurite: azurite.as_ref(),
    }
    .render()?;
    report.push_str(&overload);
    emit(&report);
    if let Some(path) = args.string("out") {
        std::fs::write(path, &report).map_err(|e| format!("--out {path}: {e}"))?;
    }
    Ok(())
}

/// Exec to first 200 on `/health` (and `/ready` for the service), in ms, alternating.
fn measure_start(
    settings: &Settings,
    bins: &Binaries,
    key_file: &Path,
) -> Result<([Vec<f64>; 2], Vec<f64>), String> {
    let mut start = [Vec::new(), Vec::new()];
    let mut ready = Vec::new();
    for rep in 0..settings.start_reps {
        for (slot, target) in [Target::Floor, Target::Service].into_iter().enumerate() {
            let begun = Instant::now();
            let mut server = Server::start(target, bins, key_file, None, &[])?;
            let to_health = server.wait_for("/health", begun)?;
            start[slot].push(to_health.as_secs_f64() * 1000.0);
            if target == Target::Service {
                ready.push(server.wait_for("/ready", begun)?.as_secs_f64() * 1000.0);
            }
            progress(&format!(
                "start {rep}: {} /health after {:.2} ms",
                target.name(),
                to_health.as_secs_f64() * 1000.0
            ));
        }
    }
    Ok((start, ready))
}

/// The batch bench (one batch at a time, then 8) and the envelope bench (1 record, a full batch).
fn in_process(
    settings: &Settings,
    bins: &Binaries,
    one_core: Option<u32>,
) -> Result<(Value, Value, Vec<Value>), String> {
    let records = settings.batch_records.to_string();
    let batches = settings.batch_count.to_string();
    let batch = |concurrency: &str| {
        self_json(
            bins,
            one_core,
            &[
                "batch",
                "--records",
                &records,
                "--batches",
                &batches,
                "--concurrency",
                concurrency,
            ],
        )
    };
    let sequential = batch("1")?;
    let concurrent = batch("8")?;
    let mut envelopes = Vec::new();
    for records in [1, settings.batch_records] {
        envelopes.push(self_json(
            bins,
            one_core,
            &[
                "envelope",
                "--records",
                &records.to_string(),
                "--iterations",
                &settings.envelope_iterations.to_string(),
            ],
        )?);
    }
    progress("in-process benches done");
    Ok((sequential, concurrent, envelopes))
}

fn merge(into: &mut LoadFigures, from: LoadFigures) {
    into.post.extend(from.post);
    into.get.extend(from.get);
    into.peak_rss.extend(from.peak_rss);
    into.rss_after.extend(from.rss_after);
}

/// Starts `target`, drives it with a `loadgen load` process, reads its memory, stops it.
fn load_round(
    settings: &Settings,
    bins: &Binaries,
    key_file: &Path,
    target: Target,
    server_cpu: Option<u32>,
    load_cpu: Option<u32>,
    rates: Option<(f64, f64)>,
) -> Result<LoadFigures, String> {
    let begun = Instant::now();
    let mut server = Server::start(target, bins, key_file, server_cpu, &[])?;
    server.wait_for("/health", begun)?;
    if target == Target::Service {
        server.wait_for("/ready", begun)?;
    }
    let mut args = vec![
        "load".to_owned(),
        "--addr".to_owned(),
        server.addr.to_string(),
        "--connections".to_owned(),
        settings.connections.to_string(),
        "--warmup-ms".to_owned(),
        settings.warmup_ms.to_string(),
        "--duration-ms".to_owned(),
        settings.duration_ms.to_string(),
        "--api-key".to_owned(),
        API_KEY.to_owned(),
    ];
    if let Some((post, get)) = rates {
        args.extend([
            "--post-rate".to_owned(),
            format!("{post:.1}"),
            "--get-rate".to_owned(),
            format!("{get:.1}"),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines = self_output(bins, load_cpu, &args)
        .map_err(|e| format!("load against the {}: {e}", target.name()))?;
    let (peak, after) = server.memory()?;
    let mut figures = LoadFigures {
        peak_rss: vec![peak],
        rss_after: vec![after],
        ..LoadFigures::default()
    };
    for line in lines {
        let value: Value =
            serde_json::from_str(&line).map_err(|e| format!("load output `{line}`: {e}"))?;
        match value["phase"].as_str() {
            Some("post") => figures.post.push(Phase::from_json(&value)?),
            Some("get") => figures.get.push(Phase::from_json(&value)?),
            Some("warmup") => {
                Phase::from_json(&value)?;
            }
            _ => return Err(format!("unexpected load output: {line}")),
        }
    }
    if figures.post.len() != 1 || figures.get.len() != 1 {
        return Err("the load run did not report both phases".into());
    }
    Ok(figures)
}

/// Runs this binary with `args` (pinned to `cpu`) and returns its stdout lines.
fn self_output(bins: &Binaries, cpu: Option<u32>, args: &[&str]) -> Result<Vec<String>, String> {
    let output = pinned(&bins.loadgen, cpu)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run loadgen {}: {e}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "loadgen {} failed ({}): {}",
            args.first().unwrap_or(&""),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Runs this binary's in-process bench and returns its one JSON line.
fn self_json(bins: &Binaries, cpu: Option<u32>, args: &[&str]) -> Result<Value, String> {
    let lines = self_output(bins, cpu, args)?;
    let line = lines.last().ok_or("no output")?;
    serde_json::from_str(line).map_err(|e| format!("bench output `{line}`: {e}"))
}

fn progress(line: &str) {
    eprintln!("bench: {line}");
}

/// One target's figures for one phase, across rounds.
type Series<'a> = &'a [Phase];

/// The numbers that go into BENCHMARKS.md.
struct Report<'a> {
    settings: &'a Settings,
    device: &'a Value,
    start: &'a [Vec<f64>; 2],
    ready: &'a [f64],
    saturated: &'a [LoadFigures; 3],
    paced: &'a [LoadFigures; 3],
    rates: (f64, f64),
    batch: [&'a Value; 2],
    envelopes: &'a [Value],
    azurite: Option<&'a Value>,
}

/// A figure that must be a finite, positive number for the output to be well formed.
fn positive(value: &Value, name: &str) -> Result<f64, String> {
    value[name]
        .as_f64()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("`{name}` is not a positive number in {value}"))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

impl Report<'_> {
    #[expect(
        clippy::too_many_lines,
        reason = "one table after another, in the order BENCHMARKS.md shows them"
    )]
    fn render(&self) -> Result<String, String> {
        let s = self.settings;
        let mut out = String::new();
        let mb = |bytes: u64| {
            #[expect(
                clippy::cast_precision_loss,
                reason = "memory sizes are far below 2^52"
            )]
            let mb = bytes as f64 / 1e6;
            mb
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "Machine: {cores} cores ({cpu}), {date}. {} {} connections, {} ms warm-up, {} ms per phase, {} round(s) alternating floor/durable floor/service; {}.",
            if s.smoke {
                "SMOKE RUN (figures mean nothing):"
            } else {
                "Load:"
            },
            s.connections,
            s.warmup_ms,
            s.duration_ms,
            s.rounds,
            if s.pin {
                "server pinned to CPU 1, load generator to CPU 0"
            } else {
                "no CPU pinning"
            }
        );
        let _ = writeln!(out);
        let sync_p50 = positive(self.device, "p50_us")?;
        let _ = writeln!(
            out,
            "Device limit (the temp dir's file system): append {} B + `fdatasync`, {} rounds one at a time: p50 {:.2} ms, p99 {:.2} ms, so at most {:.0} durable group commits/s.",
            self.device["bytes"],
            self.device["rounds"],
            sync_p50 / 1000.0,
            positive(self.device, "p99_us")? / 1000.0,
            1e6 / sync_p50
        );
        let _ = writeln!(out);

        let [floor, durable, service] = self.saturated;
        let med = |phases: &[Phase], f: fn(&Phase) -> f64| median(phases.iter().map(f));
        let rps = |p: &Phase| p.rps;
        let p50 = |p: &Phase| p.p50_us;
        let p99 = |p: &Phase| p.p99_us;
        let start_floor = median(self.start[0].iter().copied());
        let start_service = median(self.start[1].iter().copied());
        let ready = median(self.ready.iter().copied());
        for value in [start_floor, start_service, ready] {
            if !(value.is_finite() && value > 0.0) {
                return Err("a start time is missing".into());
            }
        }
        let [floor_paced, durable_paced, service_paced] = self.paced;
        let _ = writeln!(
            out,
            "| measure | floor | durable floor | service | service / reference (**bold**) |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
        // `durable`: the durable floor's figure, which is then the reference (POST rows).
        let mut row = |name: &str, f: f64, d: Option<f64>, v: f64, unit: &str, digits: usize| {
            let (floor_cell, durable_cell, reference) = match d {
                Some(d) => (
                    format!("{f:.digits$}{unit}"),
                    format!("**{d:.digits$}{unit}**"),
                    d,
                ),
                None => (format!("**{f:.digits$}{unit}**"), "–".to_owned(), f),
            };
            let _ = writeln!(
                out,
                "| {name} | {floor_cell} | {durable_cell} | {v:.digits$}{unit} | {:.2}× |",
                v / reference
            );
        };
        let phases: [(&str, Series, Option<Series>, Series); 2] = [
            (
                "POST /records",
                &floor.post,
                Some(&durable.post),
                &service.post,
            ),
            ("GET /records/{id}", &floor.get, None, &service.get),
        ];
        for (name, f, d, v) in phases {
            row(
                &format!("{name} req/s (saturated)"),
                med(f, rps),
                d.map(|d| med(d, rps)),
                med(v, rps),
                "",
                0,
            );
            row(
                &format!("{name} p50 (saturated)"),
                med(f, p50) / 1000.0,
                d.map(|d| med(d, p50) / 1000.0),
                med(v, p50) / 1000.0,
                " ms",
                2,
            );
            row(
                &format!("{name} p99 (saturated)"),
                med(f, p99) / 1000.0,
                d.map(|d| med(d, p99) / 1000.0),
                med(v, p99) / 1000.0,
                " ms",
                2,
            );
        }
        let paced_phases: [(&str, Series, Option<Series>, Series, f64); 2] = [
            (
                "POST /records",
                &floor_paced.post,
                Some(&durable_paced.post),
                &service_paced.post,
                self.rates.0,
            ),
            (
                "GET /records/{id}",
                &floor_paced.get,
                None,
                &service_paced.get,
                self.rates.1,
            ),
        ];
        for (name, f, d, v, rate) in paced_phases {
            row(
                &format!("{name} p50 at {rate:.0} req/s"),
                med(f, p50) / 1000.0,
                d.map(|d| med(d, p50) / 1000.0),
                med(v, p50) / 1000.0,
                " ms",
                2,
            );
            row(
                &format!("{name} p99 at {rate:.0} req/s"),
                med(f, p99) / 1000.0,
                d.map(|d| med(d, p99) / 1000.0),
                med(v, p99) / 1000.0,
                " ms",
                2,
            );
        }
        row(
            "start, exec to first 200 on /health (median)",
            start_floor,
            None,
            start_service,
            " ms",
            2,
        );
        let all_peak = |fig: &LoadFigures, other: &LoadFigures| {
            max_u64(&[max_u64(&fig.peak_rss), max_u64(&other.peak_rss)])
        };
        let all_after = |fig: &LoadFigures, other: &LoadFigures| {
            max_u64(&[max_u64(&fig.rss_after), max_u64(&other.rss_after)])
        };
        let floor_peak = mb(all_peak(floor, floor_paced));
        let service_peak = mb(all_peak(service, service_paced));
        let floor_after = mb(all_after(floor, floor_paced));
        let service_after = mb(all_after(service, service_paced));
        row(
            "peak RSS (VmHWM, worst round)",
            floor_peak,
            None,
            service_peak,
            " MB",
            1,
        );
        row(
            "RSS after the load (VmRSS, worst round)",
            floor_after,
            None,
            service_after,
            " MB",
            1,
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Service start to first 200 on /ready (store open): {ready:.2} ms (median). Per-round saturated req/s, floor POST {:?}, durable floor POST {:?}, service POST {:?}, floor GET {:?}, service GET {:?}.",
            floor.post.iter().map(|p| p.rps.round()).collect::<Vec<_>>(),
            durable
                .post
                .iter()
                .map(|p| p.rps.round())
                .collect::<Vec<_>>(),
            service
                .post
                .iter()
                .map(|p| p.rps.round())
                .collect::<Vec<_>>(),
            floor.get.iter().map(|p| p.rps.round()).collect::<Vec<_>>(),
            service
                .get
                .iter()
                .map(|p| p.rps.round())
                .collect::<Vec<_>>(),
        );
        let _ = writeln!(out);

        let [sequential, concurrent] = self.batch;
        let batch_rate = positive(sequential, "records_per_s")?;
        let batch_concurrent_rate = positive(concurrent, "records_per_s")?;
        let _ = writeln!(out, "| batch path | figure |");
        let _ = writeln!(out, "| --- | ---: |");
        let _ = writeln!(
            out,
            "| in process, one core, {} records/batch ({} B), one batch at a time | {batch_rate:.0} records/s |",
            sequential["records_per_batch"], sequential["message_bytes"]
        );
        let _ = writeln!(
            out,
            "| in process, one core, {} records/batch, 8 batches at a time | {batch_concurrent_rate:.0} records/s |",
            concurrent["records_per_batch"]
        );
        match self.azurite {
            Some(azurite) => {
                let _ = writeln!(
                    out,
                    "| end to end through Azurite: POST /batches → queue → trigger → stored, {} batches of {} | {:.0} records/s |",
                    azurite["batches"],
                    azurite["records_per_batch"],
                    positive(azurite, "records_per_s")?
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| end to end through Azurite | TODO: not measured (Azurite not installed: `npm ci` in tests/emulators) |"
                );
            }
        }
        for envelope in self.envelopes {
            let _ = writeln!(
                out,
                "| custom-handler envelope cost per `ingest_batch` invocation, {}-record message ({} B envelope) | {:.0} ns (envelope + message {:.0} ns, bare message {:.0} ns) |",
                envelope["records"],
                envelope["envelope_bytes"],
                envelope["envelope_cost_ns"].as_f64().unwrap_or(f64::NAN),
                positive(envelope, "envelope_and_message_ns")?,
                positive(envelope, "bare_message_ns")?,
            );
        }
        let _ = writeln!(out);

        let post_ratio = med(&service.post, rps) / med(&durable.post, rps);
        let get_ratio = med(&service.get, rps) / med(&floor.get, rps);
        let post_p99 = med(&service_paced.post, p99) / med(&durable_paced.post, p99);
        let get_p99 = med(&service_paced.get, p99) / med(&floor_paced.get, p99);
        let start_ratio = start_service / start_floor;
        let targets = [
            (
                format!("POST req/s (every 201 fsynced) ≥ 0.80 × durable floor: {post_ratio:.2}×"),
                post_ratio >= 0.80,
            ),
            (
                format!("GET req/s ≥ 0.80 × floor: {get_ratio:.2}×"),
                get_ratio >= 0.80,
            ),
            (
                format!(
                    "p99 ≤ 2 × the reference's at the same load: POST {post_p99:.2}× (durable floor), GET {get_p99:.2}× (floor)"
                ),
                post_p99 <= 2.0 && get_p99 <= 2.0,
            ),
            (
                format!("start ≤ 2 × floor's: {start_ratio:.2}×"),
                start_ratio <= 2.0,
            ),
            (
                format!("RSS after the load ≤ 20 MB: {service_after:.1} MB"),
                service_after <= 20.0,
            ),
            (
                format!(
                    "batch in process, durable, ≥ 200,000 records/s on one core: {batch_rate:.0}"
                ),
                batch_rate >= 200_000.0,
            ),
        ];
        let _ = writeln!(out, "| target | result |");
        let _ = writeln!(out, "| --- | --- |");
        for (target, met) in targets {
            let judged = if s.smoke {
                "not judged (smoke)"
            } else {
                verdict(met)
            };
            let _ = writeln!(out, "| {target} | {judged} |");
        }
        Ok(out)
    }
}
