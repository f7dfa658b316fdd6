//! Prometheus metrics (`/metrics`): requests by route and status, request and store latency, batch
//! and queue outcomes. Names are listed in docs/operations-contract.md.
//!
//! Every label comes from a closed set a client cannot grow: the method is one of
//! [`KNOWN_METHODS`] or `other`, the route is a route template or `unmatched`, the client is a
//! client of the table (at most [`MAX_CLIENT_LABELS`] ids, then `other`), `legacy` or
//! `anonymous`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The methods reported by name; any other method is reported as `other`.
pub const KNOWN_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Distinct client ids reported by name (over the process's life, reloads included); further
/// clients are reported as `other`.
pub const MAX_CLIENT_LABELS: usize = 256;

/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The label (metrics and log field) of a request method, given by its name (`GET`, as sent: the
/// comparison is case-sensitive, as method names are): a known method, or `other`.
pub fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// A route template (`/records/{id}`) or [`UNMATCHED_ROUTE`].
    pub route: String,
    /// See [`method_label`].
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub route: String,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<LatencyLabels, Histogram>,
    pub store_duration: Family<StoreLabels, Histogram>,
    pub batch_records: Family<OutcomeLabels, Counter>,
    pub queue_messages: Family<OutcomeLabels, Counter>,
    /// Requests refused by admission control, by the budget that refused them.
    pub shed: Family<ReasonLabels, Counter>,
    /// Read-side audit events written from the buffer (creates and reviews are written with their
    /// data and counted by the store's operation metrics).
    pub audit_events_written: Counter,
    /// Read-side audit events waiting in the buffer (at most `AuditLog::CAPACITY`).
    pub audit_buffer_events: Gauge,
    /// Attempts to write buffered events that failed (they are retried, never dropped).
    pub audit_write_failures: Counter,
    /// The service's own check of the audit chains: 1 intact so far, 0 broken, -1 not yet checked.
    pub audit_chain_intact: Gauge,
    /// Events the service's chain check has verified.
    pub audit_chain_verified_events: Gauge,
    /// Requests refused because their client was over its request rate.
    pub client_limited: Family<ClientLabels, Counter>,
    /// The client ids [`Metrics::client_limited`] reports by name.
    client_labels: std::sync::Mutex<std::collections::HashSet<String>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// A table client's id, `legacy`, `anonymous` or `other` (see [`MAX_CLIENT_LABELS`]).
    pub client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 3.0, 11))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mediflow");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::<LatencyLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let store_duration = Family::<StoreLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let batch_records = Family::<OutcomeLabels, Counter>::default();
        let queue_messages = Family::<OutcomeLabels, Counter>::default();
        let shed = Family::<ReasonLabels, Counter>::default();
        let client_limited = Family::<ClientLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            request_duration.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Store operation latency",
            store_duration.clone(),
        );
        registry.register(
            "batch_records",
            "Batch records judged",
            batch_records.clone(),
        );
        registry.register(
            "queue_messages",
            "Queue messages handled",
            queue_messages.clone(),
        );
        registry.register(
            "http_requests_shed",
            "HTTP requests refused at once by admission control",
            shed.clone(),
        );
        registry.register(
            "client_requests_limited",
            "HTTP requests refused because their client was over its request rate",
            client_limited.clone(),
        );
        let audit_events_written = Counter::default();
        let audit_buffer_events = Gauge::default();
        let audit_write_failures = Counter::default();
        let audit_chain_intact = Gauge::default();
        audit_chain_intact.set(-1);
        let audit_chain_verified_events = Gauge::default();
        registry.register(
            "audit_events_written",
            "Buffered audit events (reads, listings, refusals) written to the store",
            audit_events_written.clone(),
        );
        registry.register(
            "audit_buffer_events",
            "Audit events waiting in the buffer",
            audit_buffer_events.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Failed attempts to write buffered audit events (retried, never dropped)",
            audit_write_failures.clone(),
        );
        registry.register(
            "audit_chain_intact",
            "1 when every audit event checked so far links to its chain, 0 when one does not, -1 before the first check",
            audit_chain_intact.clone(),
        );
        registry.register(
            "audit_chain_verified_events",
            "Audit events the service's own chain check has verified",
            audit_chain_verified_events.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            store_duration,
            batch_records,
            queue_messages,
            shed,
            client_limited,
            client_labels: std::sync::Mutex::default(),
            audit_events_written,
            audit_buffer_events,
            audit_write_failures,
            audit_chain_intact,
            audit_chain_verified_events,
        }
    }
}

impl Metrics {
    /// Counts an answered request. `route` must be a route template or [`UNMATCHED_ROUTE`] (the
    /// router's own templates: a closed set), `method` a [`method_label`].
    pub fn observe_request(
        &self,
        route: &str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method,
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&LatencyLabels {
                route: route.to_owned(),
                method,
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_store(&self, operation: &'static str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.store_duration
            .get_or_create(&StoreLabels { operation, outcome })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count_batch(&self, accepted: usize, rejected: usize) {
        self.batch_records
            .get_or_create(&OutcomeLabels {
                outcome: "accepted",
            })
            .inc_by(accepted as u64);
        self.batch_records
            .get_or_create(&OutcomeLabels {
                outcome: "rejected",
            })
            .inc_by(rejected as u64);
    }

    /// Counts a request refused by admission control (`outstanding` or `body_bytes`).
    pub fn count_shed(&self, reason: &'static str) {
        self.shed.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a request refused by the caller's request rate, under the caller's client id (see
    /// [`ClientLabels`]).
    pub fn count_client_limited(&self, caller: &crate::domain::Principal) {
        let id = caller.client.as_str();
        let client = if caller.standing == crate::domain::identity::Standing::Named {
            let mut seen = self
                .client_labels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.contains(id) || seen.len() < MAX_CLIENT_LABELS {
                seen.insert(id.to_owned());
                id
            } else {
                "other"
            }
        } else {
            id
        };
        self.client_limited
            .get_or_create(&ClientLabels {
                client: client.to_owned(),
            })
            .inc();
    }

    pub fn count_queue_message(&self, outcome: &'static str) {
        self.queue_messages
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_form_a_closed_set() {
        let long = "X".repeat(60_000);
        for (method, label) in [
            ("GET", "GET"),
            ("POST", "POST"),
            ("OPTIONS", "OPTIONS"),
            ("TRACE", "other"),
            (long.as_str(), "other"),
            ("get", "other"),
        ] {
            assert_eq!(method_label(method), label, "{method}");
        }
    }

    #[test]
    fn many_distinct_methods_add_one_series() {
        let metrics = Metrics::default();
        for i in 0..500 {
            let method = format!("M{i}");
            metrics.observe_request(UNMATCHED_ROUTE, method_label(&method), 405, Duration::ZERO);
        }
        let page = metrics.render();
        let series = page
            .lines()
            .filter(|l| l.starts_with("mediflow_http_requests_total{"))
            .count();
        assert_eq!(series, 1, "{page}");
        assert!(page.contains("method=\"other\""), "{page}");
    }

    #[test]
    fn client_labels_are_bounded_by_the_cap_and_name_legacy_and_anonymous() {
        use crate::domain::identity::{ClientId, Principal, Roles, Sites};
        let metrics = Metrics::default();
        let named = |n: usize| {
            Principal::named(
                ClientId::parse(&format!("client-{n}")).expect("id"),
                Roles::all(),
                Sites::All,
            )
        };
        for n in 0..MAX_CLIENT_LABELS + 50 {
            metrics.count_client_limited(&named(n));
        }
        metrics.count_client_limited(&named(0));
        metrics.count_client_limited(&Principal::legacy());
        metrics.count_client_limited(&Principal::anonymous());
        let page = metrics.render();
        let series: Vec<&str> = page
            .lines()
            .filter(|l| l.starts_with("mediflow_client_requests_limited_total{"))
            .collect();
        assert_eq!(
            series.len(),
            MAX_CLIENT_LABELS + 3,
            "the cap, other, legacy, anonymous"
        );
        for line in [
            "mediflow_client_requests_limited_total{client=\"client-0\"} 2",
            "mediflow_client_requests_limited_total{client=\"other\"} 50",
            "mediflow_client_requests_limited_total{client=\"legacy\"} 1",
            "mediflow_client_requests_limited_total{client=\"anonymous\"} 1",
        ] {
            assert!(series.contains(&line), "{line} in {series:?}");
        }
    }
}
