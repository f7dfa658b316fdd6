//! The well-kept tools the harness drives, and their JSON read back:
//! - oha (`--output-format json`): fixed-duration HTTP load over N keep-alive connections, closed
//!   loop or at a fixed rate with latency correction (a late request counts from when it should
//!   have been sent: no coordinated omission);
//! - hyperfine (`--export-json`): process timing;
//! - criterion: the in-process benches' `estimates.json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::servers::pinned;

/// What one load phase measured, and how many answers that counts.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub answered: u64,
}

/// Runs oha (pinned to `cpu`, one worker thread) over `connections` with `args` (duration, key,
/// body, rate, target) and checks its answers: every one `expect`, no error but the requests cut
/// off at the deadline (at most one per connection).
pub fn oha(
    oha: &Path,
    cpu: Option<u32>,
    connections: u64,
    args: &[String],
    expect: u16,
) -> Result<Phase, String> {
    let mut command = pinned(oha, cpu);
    command.args("--no-tui --output-format json --worker-threads 1".split(' '));
    command.arg(format!("-c={connections}"));
    let report = json_output(command.args(args))?;
    let counts = |name: &str| serde_json::from_value::<BTreeMap<String, u64>>(report[name].clone());
    let statuses = counts("statusCodeDistribution").map_err(|e| format!("oha: {e}"))?;
    let mut errors = counts("errorDistribution").map_err(|e| format!("oha: {e}"))?;
    let cut_off = errors.remove("aborted due to deadline").unwrap_or(0);
    let answered = statuses.values().sum();
    if answered == 0
        || statuses.get(&expect.to_string()) != Some(&answered)
        || !errors.is_empty()
        || cut_off > connections
    {
        return Err(format!(
            "oha {args:?}: answers {statuses:?}, errors {errors:?}, {cut_off} cut off (every answer must be {expect})"
        ));
    }
    let seconds = positive(&report["summary"]["total"], "summary.total")?;
    let quantile = |p: &str| positive(&report["latencyPercentiles"][p], p).map(|s| s * 1e6);
    #[expect(
        clippy::cast_precision_loss,
        reason = "request counts are far below 2^52"
    )]
    let rps = answered as f64 / seconds;
    Ok(Phase {
        rps,
        p50_us: quantile("p50")?,
        p99_us: quantile("p99")?,
        p999_us: quantile("p99.9")?,
        answered,
    })
}

/// hyperfine's median of each (name, argv) in ms: `runs` runs after one warm-up run each, no
/// shell, `prepare` run before every run (not timed), `env` set for every command.
pub fn hyperfine(
    hyperfine: &Path,
    runs: usize,
    commands: &[(&str, Vec<String>)],
    prepare: &[String],
    env: impl Fn(&mut Command),
) -> Result<Vec<f64>, String> {
    let out = tempfile::NamedTempFile::new().map_err(|e| format!("temp file: {e}"))?;
    let mut command = pinned(hyperfine, None);
    env(&mut command);
    command
        .args("--shell=none --style basic --warmup 1 --runs".split(' '))
        .arg(runs.to_string())
        .args(["--prepare", &words(prepare), "--export-json"])
        .arg(out.path());
    for (name, argv) in commands {
        command.args(["--command-name", name, &words(argv)]);
    }
    run(&mut command)?;
    let report = read_json(out.path())?;
    let results = report["results"].as_array().map_or(&[][..], Vec::as_slice);
    let median = |r: &Value| positive(&r["median"], "hyperfine's median").map(|s| s * 1000.0);
    let medians = results.iter().map(median).collect::<Result<Vec<_>, _>>()?;
    let complete = medians.len() == commands.len();
    complete
        .then_some(medians)
        .ok_or_else(|| format!("hyperfine: not one result per command: {report}"))
}

/// Quotes each word for hyperfine's own command-line splitting (`--shell=none`).
fn words(argv: &[String]) -> String {
    let quote = |word: &String| format!("'{}'", word.replace('\'', r"'\''"));
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// The mean time per iteration, in ns, of criterion's benchmark `group/name` reported in `home`.
pub fn criterion_mean_ns(home: &Path, group: &str, name: &str) -> Result<f64, String> {
    let estimates = read_json(&home.join(group).join(name).join("new/estimates.json"))?;
    positive(&estimates["mean"]["point_estimate"], "mean")
}

/// Runs `command` to its end, its stdout on our stderr (progress, off the report).
pub fn run(command: &mut Command) -> Result<(), String> {
    use std::os::fd::AsFd as _;
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| e.to_string())?;
    let status = command.stdin(Stdio::null()).stdout(stderr).status();
    match status.map_err(|e| format!("run {command:?}: {e}"))? {
        status if status.success() => Ok(()),
        status => Err(format!("{command:?} failed ({status})")),
    }
}

/// Runs `command` to its end and parses its stdout as one JSON document.
pub fn json_output(command: &mut Command) -> Result<Value, String> {
    let output = command.stdin(Stdio::null()).output();
    let output = output.map_err(|e| format!("run {command:?}: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("{command:?}: output: {e}"))
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// A figure that must be a finite, positive number for the output to be well formed.
pub fn positive(value: &Value, name: &str) -> Result<f64, String> {
    let figure = value.as_f64().filter(|v| v.is_finite() && *v > 0.0);
    figure.ok_or_else(|| format!("`{name}` is not a positive number: {value}"))
}
