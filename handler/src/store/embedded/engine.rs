//! What the embedded store's threads share: the redb database and, under one mutex, the pending
//! map of acknowledged puts not yet in redb, how far the writer and the applier have got, and
//! the latched failure. The writer and the applier signal progress through its condition
//! variable; a thread that panics latches its failure on the way out ([`LatchOnPanic`]).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use redb::Database;

use super::journal::Table;

/// What the writer, the applier and the readers share: the redb database and the [`Ledger`] of
/// the writes not yet in it.
pub(super) struct Engine {
    pub(super) db: Database,
    ledger: Mutex<Ledger>,
    /// Signalled when the applier drains the pending map or a failure is latched.
    pub(super) progress: Condvar,
    /// Test fault injection: the next journal appends fail as the device would.
    #[cfg(test)]
    pub(super) fail_appends: std::sync::atomic::AtomicBool,
    /// Test fault injection: looking this key up fails.
    #[cfg(test)]
    pub(super) fail_lookup: Mutex<Option<u128>>,
}

/// Where the write path stands: the acknowledged puts not yet in redb, how far the writer and
/// the applier have got (in journal groups), and the first failure.
#[derive(Default)]
pub(super) struct Ledger {
    /// Acknowledged puts not yet committed to redb, with the group that wrote them.
    pub(super) pending: HashMap<(Table, u128), (u64, Bytes)>,
    pub(super) pending_bytes: usize,
    /// The last group the applier committed to redb.
    pub(super) applied: u64,
    /// The last group redb holds durably.
    pub(super) durable: u64,
    /// The last group of the closed journal segment, while it is still on disk (until the
    /// applier's durable commit holds it and the applier has deleted it).
    pub(super) closed_segment: Option<u64>,
    /// The last group acknowledged to its callers.
    pub(super) acknowledged: u64,
    /// The first journal or redb failure; latched for the life of the process.
    pub(super) failure: Option<String>,
}

impl Engine {
    pub(super) fn new(db: Database) -> Self {
        Self {
            db,
            ledger: Mutex::new(Ledger::default()),
            progress: Condvar::new(),
            #[cfg(test)]
            fail_appends: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_lookup: Mutex::new(None),
        }
    }

    pub(super) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panicking thread cannot leave `Ledger` half-updated in a way readers could misread.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn latch(&self, reason: String) {
        let mut ledger = self.ledger();
        if ledger.failure.is_none() {
            tracing::error!(%reason, "embedded store failed; writes are refused from now on");
            ledger.failure = Some(reason);
        }
        drop(ledger);
        self.progress.notify_all();
    }

    /// Waits until `done` holds or a failure is latched (then returns the failure).
    pub(super) fn wait_until(&self, mut done: impl FnMut(&Ledger) -> bool) -> Result<(), String> {
        let mut ledger = self.ledger();
        loop {
            if let Some(reason) = &ledger.failure {
                return Err(reason.clone());
            }
            if done(&ledger) {
                return Ok(());
            }
            ledger = self
                .progress
                .wait(ledger)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub(super) fn pending(&self, table: Table, key: u128) -> Option<Bytes> {
        self.ledger()
            .pending
            .get(&(table, key))
            .map(|(_, value)| value.clone())
    }
}

/// Latches a failure if its thread unwinds (a panic on the writer or applier thread).
pub(super) struct LatchOnPanic<'a>(pub(super) &'a Engine, pub(super) &'static str);

impl Drop for LatchOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.latch(self.1.to_owned());
        }
    }
}
