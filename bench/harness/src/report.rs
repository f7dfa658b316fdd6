//! The report: BENCHMARKS.md's tables, in its order, with the targets of issue 25.

use std::fmt::Write as _;
use std::time::Duration;

use crate::azurite::EndToEnd;
use crate::client::{Level, REFUSED_PAUSE};
use crate::device::Sync;
use crate::run::Settings;
use crate::tools::Phase;

/// One target's figures over the rounds.
#[derive(Debug, Default)]
pub struct Figures {
    pub post: Vec<Phase>,
    pub get: Vec<Phase>,
}

/// One round's hyperfine medians, in ms; the servers' less the probe's own cost.
#[derive(Debug, Clone, Copy)]
pub struct StartTimes {
    pub probe: f64,
    pub floor: f64,
    pub service: f64,
    /// The service to its first 200 on `/ready` (store open).
    pub ready: f64,
}

#[derive(Debug)]
pub struct Envelope {
    pub records: usize,
    pub bytes: usize,
    /// Decoding the invocation, then the message in it.
    pub invocation_ns: f64,
    pub bare_ns: f64,
}

/// The criterion figures.
#[derive(Debug)]
pub struct InProcess {
    pub message_bytes: usize,
    pub one_at_a_time: f64,
    pub eight_at_a_time: f64,
    pub envelopes: Vec<Envelope>,
}

pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// One figure of a phase.
type Figure = fn(&Phase) -> f64;

fn med(phases: &[Phase], figure: Figure) -> f64 {
    median(phases.iter().map(figure))
}

/// Each round's ratio of `service` to `reference` (their figures of the same round).
fn round_ratios(
    service: impl IntoIterator<Item = f64>,
    reference: impl IntoIterator<Item = f64>,
) -> Vec<f64> {
    service
        .into_iter()
        .zip(reference)
        .map(|(s, r)| s / r)
        .collect()
}

/// A target's figure: the median of the rounds' ratios (a round's two figures were measured
/// minutes apart at most; the machine's speed moves more than that between rounds), with the
/// rounds' own ratios in brackets.
fn judged(ratios: &[f64]) -> (f64, String) {
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    (
        median(ratios.iter().copied()),
        format!("rounds {}", each.join(", ")),
    )
}

#[expect(
    clippy::cast_precision_loss,
    reason = "memory sizes are far below 2^52"
)]
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// One row's figures: the reference is the durable floor's when there is one (the POST rows),
/// otherwise the floor's; the store floor's, when measured, is the second reference.
#[derive(Debug, Clone, Copy)]
struct Cells {
    floor: f64,
    durable: Option<f64>,
    store: Option<f64>,
    service: f64,
}

/// One row of the load table, figures in `unit` with `digits` decimals, the reference in bold.
fn row(out: &mut String, name: &str, cells: Cells, unit: &str) {
    let digits = match unit {
        "" => 0,
        " MB" => 1,
        _ => 2,
    };
    let cell = |figure: f64| format!("{figure:.digits$}{unit}");
    let (floor, durable, reference) = match cells.durable {
        Some(d) => (cell(cells.floor), format!("**{}**", cell(d)), d),
        None => (
            format!("**{}**", cell(cells.floor)),
            "–".to_owned(),
            cells.floor,
        ),
    };
    let (store, against_store) = match cells.store {
        Some(store) => (cell(store), format!("{:.2}×", cells.service / store)),
        None => ("–".to_owned(), "–".to_owned()),
    };
    let (service, ratio) = (cell(cells.service), cells.service / reference);
    let _ = writeln!(
        out,
        "| {name} | {floor} | {durable} | {store} | {service} | {ratio:.2}× | {against_store} |"
    );
}

#[derive(Debug)]
pub struct Report<'a> {
    pub plan: &'a Settings,
    pub device: Sync,
    /// One per round.
    pub start: &'a [StartTimes],
    /// By [`Target::LOAD`] slot.
    pub saturated: &'a [Figures; 4],
    pub paced: &'a [Figures; 4],
    pub rates: (f64, f64),
    /// Each target's worst (peak RSS, RSS after the load) over all load runs, in bytes.
    pub memory: [[u64; 2]; 4],
    pub in_process: &'a InProcess,
    pub azurite: Option<&'a EndToEnd>,
    pub overload: &'a [Level],
}

impl Report<'_> {
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        self.load_table(&mut out);
        self.batch_table(&mut out);
        self.targets(&mut out);
        self.overload_table(&mut out);
        out
    }

    /// The machine, the load and the device limit.
    fn header(&self, out: &mut String) {
        let p = self.plan;
        let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpu
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .unwrap_or("unknown");
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output();
        let date = date.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let _ = writeln!(
            out,
            "Machine: {cores} cores ({}), {}. {} {} connections, {} ms warm-up, {} ms per phase, {} round(s) alternating floor/durable floor/store floor/service; {}. Load: oha, one worker thread.\n",
            cpu.trim_start_matches([' ', '\t', ':']),
            date.unwrap_or_default(),
            if p.smoke {
                "SMOKE RUN (figures mean nothing):"
            } else {
                "Load:"
            },
            p.connections,
            p.warmup().as_millis(),
            p.duration().as_millis(),
            p.rounds,
            if p.server_cpu.is_some() {
                "server pinned to CPU 1, load generators to CPU 0"
            } else {
                "no CPU pinning"
            }
        );
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let Sync { rounds, bytes, .. } = self.device;
        let (p50, p99) = (ms(self.device.p50), ms(self.device.p99));
        let per_s = 1000.0 / p50;
        let _ = writeln!(
            out,
            "Device limit (the temp dir's file system): append {bytes} B + `fdatasync`, {rounds} rounds one at a time: p50 {p50:.2} ms, p99 {p99:.2} ms, so at most {per_s:.0} durable group commits/s.\n"
        );
    }

    fn load_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "| measure | floor | durable floor | store floor | service | service / reference (**bold**) | service / store floor |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        let quantiles: [(&str, Figure); 3] = [
            ("p50", |p| p.p50_us / 1000.0),
            ("p99", |p| p.p99_us / 1000.0),
            ("p99.9", |p| p.p999_us / 1000.0),
        ];
        for (figures, paced) in [(self.saturated, false), (self.paced, true)] {
            let [floor, durable, store, service] = figures;
            let requests = [
                (
                    "POST /records",
                    [&floor.post, &store.post, &service.post],
                    Some(&durable.post),
                    self.rates.0,
                ),
                (
                    "GET /records/{id}",
                    [&floor.get, &store.get, &service.get],
                    None,
                    self.rates.1,
                ),
            ];
            for (name, [f, st, s], d, rate) in requests {
                let cells = |figure| Cells {
                    floor: med(f, figure),
                    durable: d.map(|d| med(d, figure)),
                    store: Some(med(st, figure)),
                    service: med(s, figure),
                };
                if !paced {
                    row(
                        out,
                        &format!("{name} req/s (saturated)"),
                        cells(|p| p.rps),
                        "",
                    );
                }
                for (quantile, figure) in quantiles {
                    let name = if paced {
                        format!("{name} {quantile} at {rate:.0} req/s")
                    } else {
                        format!("{name} {quantile} (saturated)")
                    };
                    row(out, &name, cells(figure), " ms");
                }
            }
        }
        let t = |figure: fn(&StartTimes) -> f64| median(self.start.iter().map(figure));
        let start = "start, exec to first 200 on /health (median of the rounds' medians)";
        let cells = Cells {
            floor: t(|s| s.floor),
            durable: None,
            store: None,
            service: t(|s| s.service),
        };
        row(out, start, cells, " ms");
        let [floor, _, store, service] = self.memory;
        let rss = |i: usize| Cells {
            floor: mb(floor[i]),
            durable: None,
            store: Some(mb(store[i])),
            service: mb(service[i]),
        };
        row(out, "peak RSS (VmHWM, worst round)", rss(0), " MB");
        row(
            out,
            "RSS after the load (VmRSS, worst round)",
            rss(1),
            " MB",
        );
        let [floor, durable, store, service] = self.saturated;
        let rounds = |phases: &[Phase]| phases.iter().map(|p| p.rps.round()).collect::<Vec<_>>();
        let (probe, ready) = (t(|s| s.probe), t(|s| s.ready));
        let [floor_post, durable_post] = [rounds(&floor.post), rounds(&durable.post)];
        let [service_post, floor_get] = [rounds(&service.post), rounds(&floor.get)];
        let [store_post, store_get] = [rounds(&store.post), rounds(&store.get)];
        let service_get = rounds(&service.get);
        let _ = writeln!(
            out,
            "\nStart: hyperfine medians of `harness probe` (exec, first 200, kill and reap), less the probe's own {probe:.2} ms (`harness probe` with no server); service start to first 200 on /ready (store open): {ready:.2} ms. Per-round saturated req/s, floor POST {floor_post:?}, durable floor POST {durable_post:?}, store floor POST {store_post:?}, service POST {service_post:?}, floor GET {floor_get:?}, store floor GET {store_get:?}, service GET {service_get:?}.\n"
        );
    }

    fn batch_table(&self, out: &mut String) {
        let (b, records) = (self.in_process, harness::RECORDS_PER_BATCH);
        let _ = writeln!(
            out,
            "| batch path | figure |\n| --- | ---: |\n| in process, one core, {records} records/batch ({} B), one batch at a time | {:.0} records/s |\n| in process, one core, {records} records/batch, 8 batches at a time | {:.0} records/s |",
            b.message_bytes, b.one_at_a_time, b.eight_at_a_time
        );
        let _ = match self.azurite {
            Some(e2e) => writeln!(
                out,
                "| end to end through Azurite: POST /batches → queue → trigger → stored, {} batches of {records} | {:.0} records/s |",
                e2e.batches, e2e.records_per_s
            ),
            None => writeln!(
                out,
                "| end to end through Azurite | TODO: not measured (Azurite not installed: `npm ci` in tests/emulators) |"
            ),
        };
        for e in &b.envelopes {
            let (records, bytes, with, bare) = (e.records, e.bytes, e.invocation_ns, e.bare_ns);
            let cost = with - bare;
            let _ = writeln!(
                out,
                "| custom-handler envelope cost per `ingest_batch` invocation, {records}-record message ({bytes} B envelope) | {cost:.0} ns (envelope + message {with:.0} ns, bare message {bare:.0} ns) |"
            );
        }
        let _ = writeln!(
            out,
            "\n(In process: criterion means, `benches/in_process.rs`.)\n"
        );
    }

    fn targets(&self, out: &mut String) {
        let ([floor, durable, store, service], [floor_paced, durable_paced, _, service_paced]) =
            (self.saturated, self.paced);
        let (rps, p99): (Figure, Figure) = (|p| p.rps, |p| p.p99_us);
        let ratios = |service: &[Phase], reference: &[Phase], figure: Figure| {
            judged(&round_ratios(
                service.iter().map(figure),
                reference.iter().map(figure),
            ))
        };
        let (post, post_rounds) = ratios(&service.post, &durable.post, rps);
        let (get, get_rounds) = ratios(&service.get, &floor.get, rps);
        let (post_p99, post_p99_rounds) = ratios(&service_paced.post, &durable_paced.post, p99);
        let (get_p99, get_p99_rounds) = ratios(&service_paced.get, &floor_paced.get, p99);
        let (start, start_rounds) = judged(&round_ratios(
            self.start.iter().map(|s| s.service),
            self.start.iter().map(|s| s.floor),
        ));
        let rss = mb(self.memory[3][1]);
        let batch = self.in_process.one_at_a_time;
        // Not targets: what the service's own layers cost beyond the store's unavoidable work.
        let (store_post, store_post_rounds) = ratios(&service.post, &store.post, rps);
        let (store_get, store_get_rounds) = ratios(&service.get, &store.get, rps);
        let (store_vs_durable, _) = ratios(&store.post, &durable.post, rps);
        let (store_vs_floor, _) = ratios(&store.get, &floor.get, rps);
        let _ = writeln!(
            out,
            "Each ratio below is the median of the rounds' own ratios (the service against the reference of its round).\n"
        );
        let _ = writeln!(out, "| target | result |\n| --- | --- |");
        let smoke = self.plan.smoke;
        let mut target = |text: String, met: bool| {
            let verdict = ["MISSED", "met"][usize::from(met)];
            let verdict = if smoke { "not judged (smoke)" } else { verdict };
            let _ = writeln!(out, "| {text} | {verdict} |");
        };
        let text = "POST req/s (every 201 fsynced) ≥ 0.80 × durable floor";
        target(format!("{text}: {post:.2}× ({post_rounds})"), post >= 0.80);
        target(
            format!("GET req/s ≥ 0.80 × floor: {get:.2}× ({get_rounds})"),
            get >= 0.80,
        );
        let text = format!(
            "POST {post_p99:.2}× (durable floor; {post_p99_rounds}), GET {get_p99:.2}× (floor; {get_p99_rounds})"
        );
        let met = post_p99 <= 2.0 && get_p99 <= 2.0;
        target(
            format!("p99 ≤ 2 × the reference's at the same load: {text}"),
            met,
        );
        target(
            format!("start ≤ 2 × floor's: {start:.2}× ({start_rounds})"),
            start <= 2.0,
        );
        target(
            format!("RSS after the load ≤ 20 MB: {rss:.1} MB"),
            rss <= 20.0,
        );
        let text = "batch in process, durable, ≥ 200,000 records/s on one core";
        target(format!("{text}: {batch:.0}"), batch >= 200_000.0);
        let _ = writeln!(
            out,
            "\nThe store floor (the same store and audit events, nothing else) reaches {store_vs_durable:.2}× the durable floor's POST req/s and {store_vs_floor:.2}× the floor's GET req/s; the service reaches {store_post:.2}× its POST ({store_post_rounds}) and {store_get:.2}× its GET ({store_get_rounds})."
        );
    }

    fn overload_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nOverload (issue 16): standalone service, embedded store, auth on, host.json as shipped (maxConcurrentRequests 64, maxOutstandingRequests 256); each connection posts records in a closed loop, pausing {} ms after a refusal.\n\n| connections | seconds | 201 | 429 | 503 | other | refused without Retry-After | no answer | 201 p50 | 201 p99 |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            REFUSED_PAUSE.as_millis()
        );
        let mut deliberate = true;
        for l in self.overload {
            let known = l.count(201) + l.count(429) + l.count(503);
            let other = l.statuses.values().sum::<u64>() - known;
            deliberate &= other + l.missing_retry_after + l.errors == 0;
            let ms = |us: u64| Duration::from_micros(us).as_secs_f64() * 1000.0;
            let counts = [201, 429, 503]
                .map(|status| l.count(status).to_string())
                .join(" | ");
            let (connections, seconds, missing, errors) =
                (l.connections, l.seconds, l.missing_retry_after, l.errors);
            let (p50, p99) = (ms(l.created_p50_us), ms(l.created_p99_us));
            let _ = writeln!(
                out,
                "| {connections} | {seconds:.1} | {counts} | {other} | {missing} | {errors} | {p50:.2} ms | {p99:.2} ms |"
            );
        }
        let yes = if deliberate { "yes" } else { "NO" };
        let _ = writeln!(
            out,
            "\nEvery answer 201, or 429/503 with `Retry-After`, none unanswered: {yes}."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_the_median_of_the_rounds_ratios_not_the_ratio_of_their_medians() {
        // The reference ran fast in the third round only: the ratio of medians (20 / 20 = 1.0)
        // hides that the service was at half the reference's speed in two of three rounds.
        let ratios = round_ratios([10.0, 30.0, 20.0], [20.0, 20.0, 40.0]);
        assert_eq!(ratios, [0.5, 1.5, 0.5]);
        let (figure, rounds) = judged(&ratios);
        assert!((figure - 0.5).abs() < 1e-12, "{figure}");
        assert_eq!(rounds, "rounds 0.50, 1.50, 0.50");
    }
}
