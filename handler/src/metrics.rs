//! Prometheus metrics (`/metrics`): requests by route and status, request and store latency, batch
//! and queue outcomes. Names are listed in docs/operations-contract.md.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub route: String,
    pub method: String,
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
        Self {
            registry,
            requests,
            request_duration,
            store_duration,
            batch_records,
            queue_messages,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&LatencyLabels {
                route: route.to_owned(),
                method: method.to_owned(),
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
