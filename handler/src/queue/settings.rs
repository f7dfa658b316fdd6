//! The queue trigger's settings: `extensions.queues` of host.json (parsed by
//! [`crate::definitions`]), which the Functions host and the standalone trigger both honour.

use std::time::Duration;

/// `extensions.queues` of host.json, as both hosts honour it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub max_polling_interval: Duration,
    pub visibility_timeout: Duration,
    pub batch_size: u32,
    pub new_batch_threshold: u32,
    pub max_dequeue_count: u32,
    /// `true` for `messageEncoding: base64` (the Functions default).
    pub base64: bool,
}
