//! `loadgen`: the MediFlow benchmark.
//!
//! - `loadgen bench [--smoke] [--out FILE]`: the whole benchmark (see `runner`); `scripts/bench.sh`
//!   builds the binaries and calls it.
//! - `loadgen load --addr HOST:PORT [...]`: one load run against a server (JSON line per phase).
//! - `loadgen overload --addr HOST:PORT --connections N`: one overload level (see `overload`).
//! - `loadgen batch` / `loadgen envelope`: the in-process benches (JSON line).
//! - `loadgen fsync [--dir DIR]`: the device's append + `fdatasync` latency (JSON line).
//! - `loadgen redb [--dir DIR] [--records N]`: a durable redb commit's latency (JSON line).

mod azurite;
mod device;
mod http;
mod inprocess;
mod load;
mod overload;
mod runner;

use std::collections::HashMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

/// `--name value` pairs and `--flag`s.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    fn parse(raw: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut values = HashMap::new();
        let mut raw = raw.peekable();
        while let Some(arg) = raw.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg}"))?
                .to_owned();
            let value = match raw.peek() {
                Some(next) if !next.starts_with("--") => raw.next().unwrap_or_default(),
                _ => String::new(),
            };
            values.insert(name, value);
        }
        Ok(Self { values })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn string(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        self.values.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{name}: not a number: {v}"))
        })
    }

    pub fn optional<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.values
            .get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{name}: not a number: {v}"))
            })
            .transpose()
    }
}

/// Writes one line to stdout (the runner and people read it).
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let mut raw = std::env::args().skip(1);
    let command = raw.next().unwrap_or_default();
    let outcome = Args::parse(raw).and_then(|args| {
        match command.as_str() {
        "bench" => runner::run(&args),
        "load" => load_command(&args),
        "overload" => overload::command(&args),
        "batch" => inprocess::batch(
            args.number("records", 375)?,
            args.number("batches", 100)?,
            args.number("concurrency", 1)?,
        )
        .map(|v| emit(&v.to_string())),
        "envelope" => inprocess::envelope(
            args.number("records", 375)?,
            args.number("iterations", 1000)?,
        )
        .map(|v| emit(&v.to_string())),
        "fsync" => device::fsync(
            std::path::Path::new(args.string("dir").unwrap_or("/tmp")),
            args.number("rounds", 1000)?,
            args.number("bytes", 200)?,
        )
        .map(|v| emit(&v.to_string())),
        "redb" => device::redb(
            std::path::Path::new(args.string("dir").unwrap_or("/tmp")),
            args.number("rounds", 500)?,
            args.number("records", 1)?,
        )
        .map(|v| emit(&v.to_string())),
        _ => Err(
            "usage: loadgen bench [--smoke] [--out FILE] | load --addr HOST:PORT | batch | envelope | fsync | redb"
                .to_owned(),
        ),
    }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadgen {command}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn load_command(args: &Args) -> Result<(), String> {
    let spec = load::LoadSpec {
        addr: args
            .string("addr")
            .ok_or("--addr is required")?
            .parse()
            .map_err(|e| format!("--addr: {e}"))?,
        api_key: args.string("api-key").map(str::to_owned),
        connections: args.number("connections", 32)?,
        warmup: Duration::from_millis(args.number("warmup-ms", 2000)?),
        duration: Duration::from_millis(args.number("duration-ms", 10_000)?),
        post_rate: args.optional("post-rate")?,
        get_rate: args.optional("get-rate")?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let phases = runtime.block_on(load::run(&spec))?;
    let mut errors = 0;
    for phase in &phases {
        errors += phase.errors;
        emit(&phase.to_json().to_string());
    }
    if errors > 0 {
        return Err(format!("{errors} request(s) failed or answered non-2xx"));
    }
    Ok(())
}
