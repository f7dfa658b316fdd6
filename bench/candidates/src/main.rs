//! `candidates`: what it costs one core to make records durable AND indexed (by id, and by site
//! and date), per engine, with the embedded store's workload: random 128-bit record ids (UUID v4,
//! as the API promises), ~250-byte JSON values, 20 sites, one durable commit per group.
//!
//! Usage: `candidates ENGINE [--prefill N] [--records N] [--group N] [--dir DIR]`, one JSON line.
//! Engines:
//! - `journal`: append the group to a file + `fdatasync` (no index at all: the device's floor);
//! - `redb`: one `Durability::Immediate` transaction per group (records + by-site tables);
//! - `redb-none`: `Durability::None` per group, `Immediate` once per 16 MiB written (how an
//!   applier behind a write-ahead journal could commit);
//! - `fjall`: an LSM tree (partitions records + by_site), one batch per group, then
//!   `persist(SyncData)`.
//!
//! CPU time is the whole process's (all threads: compaction and flush threads count), read from
//! `/proc/self/stat`; run it pinned to one core (`taskset -c 1`) so every thread shares it.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

const RECORDS: redb::TableDefinition<u128, &[u8]> = redb::TableDefinition::new("records");
const BY_SITE: redb::TableDefinition<(&str, &str, u128), ()> =
    redb::TableDefinition::new("records_by_site");

struct Args {
    engine: String,
    prefill: usize,
    records: usize,
    group: usize,
    dir: String,
}

fn parse() -> Result<Args, String> {
    let mut raw = std::env::args().skip(1);
    let engine = raw
        .next()
        .ok_or("usage: candidates ENGINE [--prefill N] [--records N] [--group N] [--dir DIR]")?;
    let mut args = Args {
        engine,
        prefill: 100_000,
        records: 50_000,
        group: 32,
        dir: "/tmp".into(),
    };
    while let Some(name) = raw.next() {
        let value = raw.next().ok_or(format!("{name} needs a value"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{name}: not a number"))
        };
        match name.as_str() {
            "--prefill" => args.prefill = number()?,
            "--records" => args.records = number()?,
            "--group" => args.group = number()?,
            "--dir" => args.dir = value,
            _ => return Err(format!("unknown option {name}")),
        }
    }
    Ok(args)
}

/// One record as the store holds it: id, site, date, JSON value.
struct Item {
    id: u128,
    site: String,
    date: String,
    value: Vec<u8>,
}

fn item(n: usize) -> Item {
    let id = uuid::Uuid::new_v4();
    let site = format!("SITE{:03}", n % 20);
    let date = format!("2025-{:02}-{:02}", 1 + n % 12, 1 + n % 28);
    let value = format!(
        r#"{{"site_id":"{site}","trial_phase":"II","submission_date":"{date}","status":"pending","patient_count":42,"notes":"Initial submission {n:08}","id":"{id}"}}"#
    )
    .into_bytes();
    Item {
        id: id.as_u128(),
        site,
        date,
        value,
    }
}

/// User + system CPU seconds of this process (all threads).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 3 of the man page, utime 14, stime 15.
    (ticks(11) + ticks(12)) / 100.0
}

trait Engine {
    fn commit(&mut self, group: &[Item]) -> Result<(), String>;
    fn prefill(&mut self, group: &[Item]) -> Result<(), String> {
        self.commit(group)
    }
}

struct JournalOnly(std::fs::File);

impl Engine for JournalOnly {
    fn commit(&mut self, group: &[Item]) -> Result<(), String> {
        let mut buffer = Vec::new();
        for item in group {
            buffer.extend_from_slice(&(item.value.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&item.id.to_le_bytes());
            buffer.extend_from_slice(&item.value);
        }
        self.0.write_all(&buffer).map_err(|e| e.to_string())?;
        self.0.sync_data().map_err(|e| e.to_string())
    }
}

struct Redb {
    db: redb::Database,
    lazy: bool,
    since_durable: usize,
}

impl Redb {
    fn write(&mut self, group: &[Item], durable: bool) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut txn = self.db.begin_write().map_err(|e| err(&e))?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| err(&e))?;
        }
        {
            let mut records = txn.open_table(RECORDS).map_err(|e| err(&e))?;
            let mut index = txn.open_table(BY_SITE).map_err(|e| err(&e))?;
            for item in group {
                records
                    .insert(item.id, item.value.as_slice())
                    .map_err(|e| err(&e))?;
                index
                    .insert((item.site.as_str(), item.date.as_str(), item.id), ())
                    .map_err(|e| err(&e))?;
            }
        }
        txn.commit().map_err(|e| err(&e))
    }
}

impl Engine for Redb {
    fn commit(&mut self, group: &[Item]) -> Result<(), String> {
        self.since_durable += group.iter().map(|i| i.value.len()).sum::<usize>();
        let durable = !self.lazy || self.since_durable >= 16 * 1024 * 1024;
        if durable {
            self.since_durable = 0;
        }
        self.write(group, durable)
    }
    fn prefill(&mut self, group: &[Item]) -> Result<(), String> {
        self.write(group, true)
    }
}

struct Fjall {
    keyspace: fjall::Keyspace,
    records: fjall::PartitionHandle,
    by_site: fjall::PartitionHandle,
}

impl Engine for Fjall {
    fn commit(&mut self, group: &[Item]) -> Result<(), String> {
        let mut batch = self.keyspace.batch();
        for item in group {
            batch.insert(&self.records, item.id.to_be_bytes(), item.value.as_slice());
            let mut key = Vec::with_capacity(item.site.len() + 1 + 10 + 16);
            key.extend_from_slice(item.site.as_bytes());
            key.push(0);
            key.extend_from_slice(item.date.as_bytes());
            key.extend_from_slice(&item.id.to_be_bytes());
            batch.insert(&self.by_site, key, []);
        }
        batch.commit().map_err(|e| e.to_string())?;
        self.keyspace
            .persist(fjall::PersistMode::SyncData)
            .map_err(|e| e.to_string())
    }
}

fn open(engine: &str, dir: &Path) -> Result<Box<dyn Engine>, String> {
    let redb = |lazy| -> Result<Box<dyn Engine>, String> {
        let db = redb::Database::builder()
            .set_cache_size(4 * 1024 * 1024)
            .create(dir.join("candidate.redb"))
            .map_err(|e| e.to_string())?;
        Ok(Box::new(Redb {
            db,
            lazy,
            since_durable: 0,
        }))
    };
    match engine {
        "journal" => Ok(Box::new(JournalOnly(
            std::fs::File::create(dir.join("candidate.journal")).map_err(|e| e.to_string())?,
        ))),
        "redb" => redb(false),
        "redb-none" => redb(true),
        "fjall" => {
            let keyspace = fjall::Config::new(dir.join("candidate.fjall"))
                .cache_size(4 * 1024 * 1024)
                .max_write_buffer_size(8 * 1024 * 1024)
                .open()
                .map_err(|e| e.to_string())?;
            let options =
                || fjall::PartitionCreateOptions::default().max_memtable_size(4 * 1024 * 1024);
            let records = keyspace
                .open_partition("records", options())
                .map_err(|e| e.to_string())?;
            let by_site = keyspace
                .open_partition("by_site", options())
                .map_err(|e| e.to_string())?;
            Ok(Box::new(Fjall {
                keyspace,
                records,
                by_site,
            }))
        }
        other => Err(format!(
            "unknown engine {other}: journal | redb | redb-none | fjall"
        )),
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    let run = || -> Result<String, String> {
        let args = parse()?;
        let scratch = std::env::temp_dir().join(format!("candidates-{}", std::process::id()));
        let scratch = Path::new(&args.dir).join(scratch.file_name().unwrap_or_default());
        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        let mut engine = open(&args.engine, &scratch)?;
        let mut n = 0;
        while n < args.prefill {
            let group: Vec<Item> = (n..(n + 4096).min(args.prefill)).map(item).collect();
            engine.prefill(&group)?;
            n += group.len();
        }
        let groups: Vec<Vec<Item>> = (0..args.records.div_ceil(args.group))
            .map(|g| {
                (0..args.group)
                    .map(|i| item(args.prefill + g * args.group + i))
                    .collect()
            })
            .collect();
        let (cpu0, wall0) = (cpu_seconds(), Instant::now());
        for group in &groups {
            engine.commit(group)?;
        }
        drop(engine); // a background flush or compaction still owed is part of the cost
        let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
        let written = groups.len() * args.group;
        std::fs::remove_dir_all(&scratch).map_err(|e| e.to_string())?;
        Ok(format!(
            r#"{{"engine":"{}","prefill":{},"records":{written},"group":{},"records_per_s":{:.0},"cpu_us_per_record":{:.1},"cpu_s":{cpu:.2},"wall_s":{wall:.2},"peak_rss_kib":{}}}"#,
            args.engine,
            args.prefill,
            args.group,
            written as f64 / wall,
            cpu * 1e6 / written as f64,
            peak_rss_kib()
        ))
    };
    match run() {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("candidates: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
