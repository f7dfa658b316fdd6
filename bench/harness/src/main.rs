//! `harness`: the MediFlow benchmark's orchestrator. The well-kept tools measure (oha the HTTP
//! load, hyperfine the starts, criterion the in-process figures); the harness starts the servers
//! on ports the kernel picks, pins them, reads their memory, checks what the tools counted
//! against the service's own counters, does what no tool does (the device's fsync latency, the
//! warm-up that keeps ids, the overload check of 201/429/503 and `Retry-After`) and writes the
//! tables of BENCHMARKS.md. `scripts/bench.sh` builds everything and runs `harness run`.

mod azurite;
mod client;
mod device;
mod report;
mod run;
mod servers;
mod store_floor;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "The MediFlow benchmark's orchestrator (BENCHMARKS.md)")]
enum Command {
    /// The whole benchmark: floors against the service, starts, in-process figures, Azurite,
    /// overload; the report on stdout.
    Run(run::Settings),
    /// Closed-loop `POST /records` from N connections (the warm-up, the overload; pin it with
    /// taskset): one JSON line of answers by status, refusals without `Retry-After`, the 201s'
    /// p50/p99.
    Post {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        duration_ms: u64,
        /// Write `http://ADDR/records/{id}` of the records created here, one a line (for oha).
        #[arg(long)]
        urls: Option<PathBuf>,
    },
    /// The store floor: the floor's HTTP stack in front of the service's embedded store in DIR
    /// (`src/store_floor.rs`); serves until killed.
    StoreFloor { addr: SocketAddr, dir: PathBuf },
    /// Starts SERVER (which binds port 0 and prints its address), exits at its first 200 on PATH
    /// and kills it: what hyperfine times. Without SERVER, exits at once (the probe's own cost).
    Probe {
        #[arg(long, default_value = "/health")]
        path: String,
        #[arg(last = true)]
        server: Vec<String>,
    },
}

fn main() -> ExitCode {
    match execute(Command::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("harness: {err}");
            ExitCode::FAILURE
        }
    }
}

#[expect(clippy::print_stdout, reason = "the JSON line is the output")]
fn execute(command: Command) -> Result<(), String> {
    match command {
        Command::Run(settings) => run::run(settings),
        Command::Post {
            addr,
            connections,
            duration_ms,
            urls,
        } => {
            let time = Duration::from_millis(duration_ms);
            let key = servers::API_KEY;
            let (level, ids) = client::post_loop(addr, key, connections, time, urls.is_some())?;
            if let Some(path) = urls {
                let lines = ids.iter().map(|id| format!("http://{addr}/records/{id}\n"));
                std::fs::write(&path, lines.collect::<String>()).map_err(client::text)?;
            }
            let line = serde_json::to_string(&level).map_err(client::text)?;
            println!("{line}");
            Ok(())
        }
        Command::StoreFloor { addr, dir } => store_floor::serve(addr, &dir),
        Command::Probe { path, server } => {
            let Some((program, args)) = server.split_first() else {
                return Ok(());
            };
            let mut command = std::process::Command::new(program);
            let started = servers::spawn_listening(command.args(args), servers::listening_addr);
            let (mut child, addr) = started?;
            servers::wait_for_200(&mut child, addr, &path) // and `child` is killed
        }
    }
}
