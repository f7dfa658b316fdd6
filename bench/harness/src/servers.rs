//! The servers the benchmark measures, each started afresh on a port the kernel picks: every
//! server is given port 0 and the harness reads the real address from its start-up line (the
//! service's JSON `listening` line, the floor's line of the same shape).
//!
//! - the floor (`floor 127.0.0.1:0`): the bare HTTP stack;
//! - the durable floor (`floor 127.0.0.1:0 JOURNAL`): plus a group-committed, fsynced append;
//! - the store floor (`harness store-floor 127.0.0.1:0 DIR`): the bare HTTP stack in front of the
//!   service's embedded store, with its audit events (`src/store_floor.rs`);
//! - the service: standalone, embedded store in a fresh temp dir, API-key auth on, default log
//!   level, JSON log lines (only failed or slow requests write one).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The API key every service of the benchmark accepts.
pub const API_KEY: &str = "bench-key-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Floor,
    DurableFloor,
    StoreFloor,
    Service,
}

impl Target {
    /// The load targets, in the order each round runs them (and the slots of their figures).
    pub const LOAD: [Self; 4] = [
        Self::Floor,
        Self::DurableFloor,
        Self::StoreFloor,
        Self::Service,
    ];

    pub fn name(self) -> &'static str {
        ["floor", "durable floor", "store floor", "service"][self as usize]
    }
}

/// The measured binaries, and the key file the services read.
#[derive(Debug)]
pub struct Binaries {
    pub floor: PathBuf,
    pub handler: PathBuf,
    /// This binary, which serves the store floor (`harness store-floor`).
    pub harness: PathBuf,
    pub key_file: PathBuf,
}

impl Binaries {
    /// The command that starts `target` on port 0 (its data in `data`), pinned to `cpu`.
    pub fn command(&self, target: Target, data: &Path, cpu: Option<u32>) -> Command {
        if target == Target::Service {
            let mut command = pinned(&self.handler, cpu);
            service_env(&mut command, data, &self.key_file);
            return command;
        }
        if target == Target::StoreFloor {
            let mut command = pinned(&self.harness, cpu);
            command.args(["store-floor", "127.0.0.1:0"]).arg(data);
            return command;
        }
        let mut command = pinned(&self.floor, cpu);
        command.arg("127.0.0.1:0");
        if target == Target::DurableFloor {
            command.arg(data.join("journal"));
        }
        command
    }
}

/// The service's settings: port 0, `data` as its store, auth on with `key_file`, JSON logs.
pub fn service_env(command: &mut Command, data: &Path, key_file: &Path) {
    if let Some(tunables) = image_malloc_tunables() {
        command.env("GLIBC_TUNABLES", tunables);
    }
    command
        .env("MEDIFLOW_ADDR", "127.0.0.1:0")
        .env("MEDIFLOW_DATA_DIR", data)
        .env("MEDIFLOW_API_KEYS_FILE", key_file)
        .env("LOG_FORMAT", "json");
}

/// The `GLIBC_TUNABLES` the standalone image sets (the Dockerfile's `ENV`), so the service is
/// measured with the malloc settings it runs with.
pub fn image_malloc_tunables() -> Option<&'static str> {
    include_str!("../../../Dockerfile")
        .lines()
        .find_map(|line| line.trim().strip_prefix("GLIBC_TUNABLES="))
        .map(|value| value.trim_end_matches('\\').trim())
}

/// `program`, pinned to `cpu` with taskset when given, with none of the caller's service, Functions
/// host or log settings (nothing from the environment may change what is measured).
pub fn pinned(program: &Path, cpu: Option<u32>) -> Command {
    let taskset = cpu.map(|cpu| ["-c".to_owned(), cpu.to_string()]);
    let mut command = Command::new(if taskset.is_some() {
        "taskset".as_ref()
    } else {
        program
    });
    if let Some(taskset) = taskset {
        command.args(taskset).arg(program);
    }
    for (name, _) in std::env::vars() {
        let ours = ["MEDIFLOW_", "FUNCTIONS_", "AzureFunctionsJobHost"];
        if ours.iter().any(|p| name.starts_with(p)) || name == "RUST_LOG" || name == "LOG_FORMAT" {
            command.env_remove(name);
        }
    }
    command
}

/// Starts `command` with its stdout read by a thread, and waits (at most 60 s) for the address
/// `addr_in` finds in a line; the thread keeps draining stdout so the server never blocks on it.
pub fn spawn_listening(
    command: &mut Command,
    addr_in: fn(&str) -> Option<SocketAddr>,
) -> Result<(Running, SocketAddr), String> {
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    let spawned = command.stderr(Stdio::null()).spawn();
    let mut child = Running(spawned.map_err(|e| format!("start {command:?}: {e}"))?);
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let (found, addr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = addr_in(&line).map(|addr| found.send(addr));
        }
    });
    let Ok(addr) = addr.recv_timeout(Duration::from_secs(60)) else {
        let status = child.0.try_wait().ok().flatten();
        return Err(format!(
            "{command:?}: no address within 60 s (exit: {status:?})"
        ));
    };
    Ok((child, addr))
}

/// The `http_addr` of a start-up line: `..."http_addr":"127.0.0.1:PORT"...`.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(r#""http_addr":""#)?;
    rest.split('"').next()?.parse().ok()
}

/// Polls `GET path` every 0.2 ms until it answers 200 (at most 60 s); fails if the child exits.
pub fn wait_for_200(child: &mut Running, addr: SocketAddr, path: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::client::get(addr, path).is_none_or(|(status, _)| status != 200) {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!("the server exited at start: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("no 200 on {path} within 60 s"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// A child process, killed (and reaped) on drop.
#[derive(Debug)]
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running server, ready to serve (store open), stopped on drop.
#[derive(Debug)]
pub struct Server {
    child: Running,
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Server {
    pub fn start(target: Target, bins: &Binaries, cpu: Option<u32>) -> Result<Self, String> {
        let data = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let mut command = bins.command(target, data.path(), cpu);
        let (mut child, addr) = spawn_listening(&mut command, listening_addr)?;
        let ready = ["/health", "/health", "/health", "/ready"][target as usize];
        wait_for_200(&mut child, addr, ready).map_err(|e| format!("{}: {e}", target.name()))?;
        Ok(Self {
            child,
            addr,
            _data: data,
        })
    }

    /// (VmHWM, VmRSS) in bytes, from `/proc/<pid>/status`.
    pub fn memory(&self) -> Result<(u64, u64), String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id()));
        let status = status.map_err(|e| format!("/proc status: {e}"))?;
        let field = |name: &str| {
            let kib = status.lines().find_map(|line| line.strip_prefix(name));
            let kib = kib.and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            kib.map(|kib| kib * 1024)
                .ok_or_else(|| format!("no {name} in /proc status"))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }
}

#[cfg(test)]
mod tests {
    /// The bench measures the service with the image's malloc settings: losing the Dockerfile's
    /// line (or its format) would silently measure another configuration.
    #[test]
    fn the_image_malloc_tunables_are_found_in_the_dockerfile() {
        let tunables = super::image_malloc_tunables().expect("the Dockerfile sets GLIBC_TUNABLES");
        assert!(tunables.starts_with("glibc.malloc."), "{tunables}");
        assert!(!tunables.contains([' ', '\\']), "{tunables}");
    }
}
