//! Azure Cosmos DB for NoSQL backend (`MEDIFLOW_STORE=cosmos`); docs/adr/0003-cosmos-data-model.md
//! explains the choices, docs/adr/0010 the audit trail.
//!
//! Two containers. The audit trail has its own (see [`audit`]: one hash chain per process, items
//! only ever created). The data container has partition key `/id`. A record is one document (its fields, its `id`, and
//! `kind: "record"`); a batch report is one document with id `batch-<batch uuid>` and
//! `kind: "batch"`. Every read by id is a point read (`id` = partition key, about 1 RU); the
//! one query is listing a site's records (docs/adr/0007-listing-by-site.md). Writes are single documents, so each one is atomic: a record is stored whole or
//! not at all.
//!
//! **Event first.** A record and its event live in different containers, so no transaction holds
//! both; the event is made durable *before* the change it describes, and the change is
//! acknowledged only after both:
//! * insert: a point read (1 RU) first; an existing record is answered `Existing` with no event.
//!   Otherwise the create event, then the create. If the create then fails, a compensating event
//!   (same record, outcome `not_stored`) is appended, best effort, and the error returned. If it
//!   conflicts (another writer created the id between the read and the create: a race of two
//!   submissions of the same record), the record exists with its own create event and this call
//!   leaves one more create event for it: a duplicate claim of a create that did happen, harmless.
//! * replace (a review): read the record with its `_etag`, compare with `expected`, append the
//!   review event, then replace with If-Match on that `_etag`. A 412 (changed since the read)
//!   answers `Changed` after a compensating event (outcome `not_applied`).
//!
//! So a stored record or review always has its event; an event may describe an attempt that a
//! later event of the same record marks as not applied (or, after a timeout, describe nothing).
//!
//! Failures are mapped here, on the typed status: 404 is "absent", 409 is "already stored" (read
//! it back: that is how idempotent POSTs and batch redeliveries converge), 429 after the SDK's own
//! bounded retries and every transport failure or timeout become [`StoreError::Unavailable`]
//! (503 + `Retry-After`), a request Cosmos refuses as malformed is a bug ([`StoreError::Corrupt`]).
//!
//! Auth is Entra ID (workload or managed identity). Account keys exist only in builds with the
//! `emulator` feature, for the local emulator; the database and container are created by
//! Terraform, never by the service.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_data_cosmos::options::{
    BinaryEncodingOptions, ConnectionPoolOptionsBuilder, EndToEndOperationLatencyPolicy,
    OperationOptions, OperationOptionsBuilder, ThrottlingRetryOptionsBuilder,
};
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, ContainerClient, CosmosClient, CosmosError, CosmosRuntime,
    CosmosStatus, FeedScope, Query, RoutingStrategy,
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Inserted, RecordStore, Replaced, SharedStore, StoreError};
use crate::config::{CosmosConfig, CosmosCredential};
use crate::credential::token_credential;
use crate::domain::audit::{AuditCursor, AuditQuery};
use crate::domain::{AuditDraft, AuditEvent};
use crate::domain::{BatchId, BatchReport, ListQuery, Record, RecordId};

pub mod audit;

use self::audit::ChainWriter;

/// How much longer than the SDK's own deadline (the end-to-end latency policy, set to
/// [`CosmosConfig::operation_timeout`]) the [`Backstop`] waits before it gives up on a call.
const BACKSTOP_MARGIN: Duration = Duration::from_secs(1);

/// The SDK retries 429s itself, honouring `x-ms-retry-after-ms`; this bounds the total it may
/// wait per operation (SDK default: 30 s). Past it the 429 reaches us and becomes a 503.
pub const THROTTLE_RETRY_BUDGET: Duration = Duration::from_secs(2);

/// At most this many 429 retries per operation (SDK default: 9 documented, 18 for data-plane).
const THROTTLE_RETRY_COUNT: u32 = 9;

/// Building the client and resolving the container (done once, at start, retried by the server).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Record creates in flight at once for [`RecordStore::insert_many`].
const INSERT_CONCURRENCY: usize = 16;

/// `Retry-After` for failures that carry no hint of their own (unreachable, timed out, 5xx).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A document id that never exists (not a UUID, no `batch-` prefix): readiness reads it and
/// expects 404, a 1 RU point read proving the container answers.
const READINESS_PROBE_ID: &str = "mediflow-readiness-probe";

/// Cosmos sub-status of a 404 whose *container* (or database) is missing, not the document.
const OWNER_RESOURCE_NOT_FOUND: u16 = 1003;

/// What a document is; stored as `kind` so the change feed or an export can tell them apart.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum DocumentKind {
    Record,
    Batch,
}

/// A record as stored: its own fields and `id` (which is also the partition key), plus `kind`.
/// Read back straight into [`Record`]; `kind` and Cosmos' `_rid`, `_etag`, `_ts`... are ignored.
#[derive(Serialize)]
struct RecordDocument<'a> {
    #[serde(flatten)]
    record: &'a Record,
    kind: DocumentKind,
}

/// A batch report as stored, under id `batch-<uuid>` (never a record id: those are bare UUIDs).
#[derive(Serialize)]
struct BatchDocument<'a> {
    id: String,
    kind: DocumentKind,
    #[serde(flatten)]
    report: &'a BatchReport,
}

fn batch_document_id(id: BatchId) -> String {
    format!("batch-{id}")
}

/// The Cosmos DB backend. Cheap to clone (the clones share one audit chain).
#[derive(Clone)]
pub struct CosmosStore {
    container: ContainerClient,
    audit: ContainerClient,
    chain: ChainWriter,
    backstop: Backstop,
}

/// A timer around every SDK call, in case anything outside the SDK's own deadline stalls: a dead
/// or black-holed endpoint answers 503 (`Unavailable`) after it, never hangs a request.
#[derive(Debug, Clone, Copy)]
pub struct Backstop(Duration);

impl Backstop {
    /// The backstop of a client whose operations have `operation_timeout` each.
    pub fn after(operation_timeout: Duration) -> Self {
        Self(operation_timeout + BACKSTOP_MARGIN)
    }

    /// Runs one SDK call under the timer; the SDK's own outcome is for the caller to judge.
    pub async fn bound<T>(
        self,
        call: impl Future<Output = azure_data_cosmos::Result<T>>,
    ) -> Result<azure_data_cosmos::Result<T>, StoreError> {
        let limit = self.0;
        tokio::time::timeout(limit, call).await.map_err(|_| {
            StoreError::unavailable(format!("Cosmos DB did not answer within {limit:?}"))
        })
    }
}

impl std::fmt::Debug for CosmosStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosStore").finish_non_exhaustive()
    }
}

/// Connects to the configured account and container (`open_store` retries with backoff on error).
pub async fn connect(config: &CosmosConfig) -> Result<SharedStore, StoreError> {
    Ok(Arc::new(CosmosStore::connect(config).await?))
}

/// Builds a client for the configured account: the chosen credential, binary encoding off, and the
/// bounded retry and timeout policy of this module applied to every operation.
///
/// Public for the emulator tests, which create their database and container with it.
pub async fn client(config: &CosmosConfig) -> Result<CosmosClient, StoreError> {
    let endpoint: AccountEndpoint = config.endpoint.parse().map_err(|e: CosmosError| {
        StoreError::unavailable(format!("COSMOS_ENDPOINT is not a valid endpoint: {e}"))
    })?;
    let (account, emulator) = account_reference(endpoint, &config.credential)?;
    let mut pool = ConnectionPoolOptionsBuilder::new();
    if emulator {
        // The emulator speaks HTTP/1.1 only; real accounts keep the SDK's HTTP/2 default.
        pool = pool.with_is_http2_allowed(false);
    }
    let pool = pool
        .build()
        .map_err(|e| sdk_setup_error("connection pool options", &e))?;
    let runtime = CosmosRuntime::builder()
        .with_connection_pool(pool)
        .build()
        .await
        .map_err(|e| sdk_setup_error("runtime", &e))?;
    CosmosClient::builder()
        .with_runtime(runtime)
        .with_default_operation_options(operation_options(config.operation_timeout))
        // Text JSON on the wire everywhere: the emulator cannot speak binary, and our ~300-byte
        // documents gain nothing from it. What the tests exercise is what production sends.
        .with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false))
        // No region list: the SDK follows the account's own region order.
        .build(account, RoutingStrategy::PreferredRegions(Vec::new()))
        .await
        .map_err(|e| map_error(&e))
}

/// Retry and deadline policy for every data operation of the client.
fn operation_options(timeout: Duration) -> OperationOptions {
    OperationOptionsBuilder::new()
        .with_throttling_retry_options(
            ThrottlingRetryOptionsBuilder::new()
                .with_max_retry_count(THROTTLE_RETRY_COUNT)
                .with_max_retry_wait_time(THROTTLE_RETRY_BUDGET)
                .build(),
        )
        .with_end_to_end_latency_policy(EndToEndOperationLatencyPolicy::new(timeout))
        .build()
}

/// The account reference for the configured credential, and whether it targets the emulator.
fn account_reference(
    endpoint: AccountEndpoint,
    credential: &CosmosCredential,
) -> Result<(AccountReference, bool), StoreError> {
    let token = match credential {
        CosmosCredential::Entra(identity) => {
            token_credential(identity).map_err(StoreError::unavailable)?
        }
        #[cfg(feature = "emulator")]
        CosmosCredential::Key(key) => {
            let key = azure_core::credentials::Secret::from(key.expose().to_owned());
            return Ok((
                AccountReference::with_authentication_key(endpoint, key),
                true,
            ));
        }
    };
    Ok((AccountReference::with_credential(endpoint, token), false))
}

fn sdk_setup_error(what: &str, err: &CosmosError) -> StoreError {
    StoreError::unavailable(format!("cannot set up the Cosmos DB {what}: {err}"))
}

impl CosmosStore {
    /// Builds the client and resolves the container (which must exist: Terraform creates it).
    pub async fn connect(config: &CosmosConfig) -> Result<Self, StoreError> {
        let connecting = async {
            let client = client(config).await?;
            let database = client.database_client(config.database.as_str());
            let open = |name: &str| {
                let database = &database;
                let name = name.to_owned();
                async move {
                    database
                        .container_client(name.as_str(), None)
                        .await
                        .map_err(|e| {
                            StoreError::unavailable(format!(
                                "cannot open container {}/{name}: {}",
                                config.database,
                                map_error(&e)
                            ))
                        })
                }
            };
            Ok::<_, StoreError>((
                open(&config.container).await?,
                open(&config.audit_container).await?,
            ))
        };
        let (container, audit) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                StoreError::unavailable(format!(
                    "Cosmos DB did not answer within {CONNECT_TIMEOUT:?}"
                ))
            })??;
        tracing::info!(database = %config.database, container = %config.container,
            audit_container = %config.audit_container, "Cosmos DB containers open");
        let backstop = Backstop::after(config.operation_timeout);
        let chain = ChainWriter::spawn(audit.clone(), backstop);
        Ok(Self {
            container,
            audit,
            chain,
            backstop,
        })
    }

    /// Point read (`id` is the partition key). `None` when the document does not exist.
    async fn read<T: DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        match self
            .backstop
            .bound(self.container.read_item(id.to_owned(), id, None))
            .await?
        {
            Ok(response) => response.into_model::<T>().map(Some).map_err(|e| {
                StoreError::Corrupt(format!("stored document {id} is unreadable: {e}"))
            }),
            Err(err) if is_missing_document(err.status()) => Ok(None),
            Err(err) => Err(map_error(&err)),
        }
    }

    /// Point read with the document's `_etag`. `None` when the document does not exist.
    async fn read_tagged<T: DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<Option<(T, Etag)>, StoreError> {
        match self
            .backstop
            .bound(self.container.read_item(id.to_owned(), id, None))
            .await?
        {
            Ok(response) => {
                let etag = response.headers().etag().cloned().ok_or_else(|| {
                    StoreError::Corrupt(format!("stored document {id} came without an ETag"))
                })?;
                let model = response.into_model::<T>().map_err(|e| {
                    StoreError::Corrupt(format!("stored document {id} is unreadable: {e}"))
                })?;
                Ok(Some((model, etag)))
            }
            Err(err) if is_missing_document(err.status()) => Ok(None),
            Err(err) => Err(map_error(&err)),
        }
    }

    /// Replaces a document if its `_etag` is still `etag`; `false` when it changed (412) or is
    /// gone (404).
    async fn replace_if(
        &self,
        id: &str,
        document: &impl Serialize,
        etag: Etag,
    ) -> Result<bool, StoreError> {
        let options = ItemWriteOptions::default().with_precondition(Precondition::if_match(etag));
        match self
            .backstop
            .bound(
                self.container
                    .replace_item(id.to_owned(), id, document, Some(options)),
            )
            .await?
        {
            Ok(_) => Ok(true),
            Err(err) if err.status().is_precondition_failed() => Ok(false),
            Err(err) if is_missing_document(err.status()) => Ok(false),
            Err(err) => Err(map_error(&err)),
        }
    }

    /// Appends an event that says an earlier one did not take effect. Best effort: the caller is
    /// already answering an error or a refusal, which this must not hide.
    async fn compensate(&self, mut event: AuditDraft, outcome: &str) {
        outcome.clone_into(&mut event.outcome);
        if let Err(err) = self.chain.append(vec![event]).await {
            tracing::warn!(error = %err, outcome,
                "cannot append the compensating audit event (the earlier event stands alone)");
        }
    }

    /// Creates the records that `insert` found absent, their create events already durable.
    async fn create_record(
        &self,
        record: Record,
        audit: &AuditDraft,
    ) -> Result<Inserted, StoreError> {
        let id = record.id.to_string();
        let document = RecordDocument {
            record: &record,
            kind: DocumentKind::Record,
        };
        match self.create(&id, &document).await {
            Ok(true) => Ok(Inserted::Created),
            // A race with another submission of the same id (see the module docs).
            Ok(false) => Ok(Inserted::Existing(self.read_conflicting(&id).await?)),
            Err(err) => {
                self.compensate(audit.created(record.id), "not_stored")
                    .await;
                Err(err)
            }
        }
    }

    /// An insert's outcome once its point read is done (and its event durable, when absent).
    async fn decide(
        &self,
        record: Record,
        stored: Option<Record>,
        audit: &AuditDraft,
    ) -> Result<Inserted, StoreError> {
        match stored {
            Some(existing) => Ok(Inserted::Existing(existing)),
            None => self.create_record(record, audit).await,
        }
    }

    /// Creates a document; `false` when one with this id already exists (409).
    async fn create(&self, id: &str, document: &impl Serialize) -> Result<bool, StoreError> {
        match self
            .backstop
            .bound(
                self.container
                    .create_item(id.to_owned(), id, document, None),
            )
            .await?
        {
            Ok(_) => Ok(true),
            Err(err) if err.status().is_conflict() => Ok(false),
            Err(err) => Err(map_error(&err)),
        }
    }

    /// Reads back the document a create conflicted with.
    ///
    /// Another replica (or another pod, with its own session) may have written it a moment ago,
    /// and a session read without that writer's token can briefly miss it; a few quick re-reads
    /// cover that. Nothing is ever deleted, so a document still missing after them means the store
    /// is not serving consistently: 503, and the caller's retry converges.
    async fn read_conflicting<T: DeserializeOwned>(&self, id: &str) -> Result<T, StoreError> {
        for pause_ms in [0, 50, 200] {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            if let Some(stored) = self.read(id).await? {
                return Ok(stored);
            }
        }
        Err(StoreError::unavailable(format!(
            "document {id} conflicted on create but cannot be read"
        )))
    }
}

/// A 404 about the document itself (not a missing container or database, sub-status 1003).
fn is_missing_document(status: CosmosStatus) -> bool {
    status.is_not_found()
        && status
            .sub_status()
            .is_none_or(|s| s.value() != OWNER_RESOURCE_NOT_FOUND)
}

/// The listing query (docs/adr/0007-listing-by-site.md): served by the composite index
/// `(site_id, submission_date, id)` of infra/policies/cosmos-indexing-policy.json. Batch documents
/// have no `site_id`, so the filter alone keeps them out. Keyset paging: the next page starts
/// strictly after the previous page's last `(submission_date, id)`; ids are lower-case hyphenated
/// UUIDs, whose string order is their numeric order (the embedded store's order).
fn list_query(query: &ListQuery, max: usize) -> Result<Query, StoreError> {
    const FIRST_DATE: &str = "0000-00-00";
    const LAST_DATE: &str = "9999-12-31";
    let mut sql = format!(
        "SELECT TOP {max} * FROM c WHERE c.site_id = @site \
         AND c.submission_date >= @from AND c.submission_date <= @to"
    );
    if query.after.is_some() {
        sql.push_str(
            " AND (c.submission_date < @after_date \
             OR (c.submission_date = @after_date AND c.id < @after_id))",
        );
    }
    sql.push_str(" ORDER BY c.site_id DESC, c.submission_date DESC, c.id DESC");
    let bad = |e: CosmosError| StoreError::Corrupt(format!("cannot build the list query: {e}"));
    let mut built = Query::from(sql)
        .with_parameter("@site", query.site.as_str())
        .map_err(bad)?
        .with_parameter(
            "@from",
            query.from.as_ref().map_or(FIRST_DATE, |d| d.as_str()),
        )
        .map_err(bad)?
        .with_parameter("@to", query.to.as_ref().map_or(LAST_DATE, |d| d.as_str()))
        .map_err(bad)?;
    if let Some(after) = &query.after {
        built = built
            .with_parameter("@after_date", after.date.as_str())
            .map_err(bad)?
            .with_parameter("@after_id", after.id.to_string())
            .map_err(bad)?;
    }
    Ok(built)
}

/// Maps a failure the caller did not handle (404 and 409 are handled where they mean something).
fn map_error(err: &CosmosError) -> StoreError {
    let status = err.status();
    if status.is_throttled() {
        // The SDK already waited out its retry budget; pass the service's hint to the client.
        let retry_after = err
            .response()
            .and_then(|response| response.headers().retry_after_ms)
            .map_or(DEFAULT_RETRY_AFTER, Duration::from_millis);
        return StoreError::Unavailable {
            retry_after,
            reason: format!(
                "Cosmos DB is throttling (429) beyond the {THROTTLE_RETRY_BUDGET:?} retry budget"
            ),
        };
    }
    let code = u16::from(status.status_code());
    if status.is_bad_request() || code == 413 {
        // We built a request Cosmos refuses: a bug on our side, never the client's input.
        return StoreError::Corrupt(format!("Cosmos DB refused the request ({code}): {err}"));
    }
    // Everything else (unreachable, timed out, 5xx, 401/403 misconfiguration, 412, a missing
    // container) is the store not being able to serve right now.
    StoreError::Unavailable {
        retry_after: DEFAULT_RETRY_AFTER,
        reason: format!("Cosmos DB ({code}): {err}"),
    }
}

#[async_trait]
impl RecordStore for CosmosStore {
    /// Point read, then (if absent) the create event, then the create: see the module docs.
    async fn insert(&self, record: Record, audit: &AuditDraft) -> Result<Inserted, StoreError> {
        if let Some(existing) = self.read(&record.id.to_string()).await? {
            return Ok(Inserted::Existing(existing));
        }
        self.chain.append(vec![audit.created(record.id)]).await?;
        self.create_record(record, audit).await
    }

    /// [`RecordStore::insert`] per record, [`audit::MAX_BATCH_EVENTS`] records at a time: their
    /// point reads and creates concurrently (at most [`INSERT_CONCURRENCY`] in flight), the create
    /// events of the absent ones in one transactional batch between the two. Outcomes are in
    /// input order. The first failure ends the call; records created before it stay (each with
    /// its event), which is harmless: every insert is insert-if-absent under a deterministic id,
    /// so the retry completes the rest.
    async fn insert_many(
        &self,
        records: Vec<Record>,
        audit: &AuditDraft,
    ) -> Result<Vec<Inserted>, StoreError> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<Record> = records.by_ref().take(audit::MAX_BATCH_EVENTS).collect();
            let ids: Vec<RecordId> = chunk.iter().map(|record| record.id).collect();
            let stored: Vec<Option<Record>> = stream::iter(ids.into_iter().map(|id| self.get(id)))
                .buffered(INSERT_CONCURRENCY)
                .try_collect()
                .await?;
            let events: Vec<AuditDraft> = chunk
                .iter()
                .zip(&stored)
                .filter(|(_, stored)| stored.is_none())
                .map(|(record, _)| audit.created(record.id))
                .collect();
            self.chain.append(events).await?;
            let decided: Vec<Inserted> = stream::iter(
                chunk
                    .into_iter()
                    .zip(stored)
                    .map(|(record, stored)| self.decide(record, stored, audit)),
            )
            .buffered(INSERT_CONCURRENCY)
            .try_collect()
            .await?;
            outcomes.extend(decided);
        }
        Ok(outcomes)
    }

    async fn get(&self, id: RecordId) -> Result<Option<Record>, StoreError> {
        self.read(&id.to_string()).await
    }

    /// Read with `_etag`, compare, the review event, then If-Match replace: see the module docs.
    async fn replace(
        &self,
        expected: &Record,
        new: Record,
        event: AuditDraft,
    ) -> Result<Replaced, StoreError> {
        let id = new.id.to_string();
        let Some((current, etag)) = self.read_tagged::<Record>(&id).await? else {
            return Ok(Replaced::Changed(None));
        };
        if current != *expected {
            return Ok(Replaced::Changed(Some(current)));
        }
        self.chain.append(vec![event.clone()]).await?;
        let document = RecordDocument {
            record: &new,
            kind: DocumentKind::Record,
        };
        match self.replace_if(&id, &document, etag).await {
            Ok(true) => Ok(Replaced::Done),
            Ok(false) => {
                self.compensate(event, "not_applied").await;
                Ok(Replaced::Changed(self.read(&id).await?))
            }
            Err(err) => {
                self.compensate(event, "not_applied").await;
                Err(err)
            }
        }
    }

    async fn append_audit(&self, events: Vec<AuditDraft>) -> Result<(), StoreError> {
        self.chain.append(events).await
    }

    /// One cross-partition query with every filter in SQL (the emulator serves all of them).
    async fn audit_page(
        &self,
        query: &AuditQuery,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        audit::page(&self.audit, self.backstop, query, max).await
    }

    async fn audit_chain(
        &self,
        after: Option<&AuditCursor>,
        max: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        audit::chain(&self.audit, self.backstop, after, max).await
    }

    async fn insert_batch(&self, report: BatchReport) -> Result<BatchReport, StoreError> {
        let id = batch_document_id(report.stored_id());
        if self
            .create(
                &id,
                &BatchDocument {
                    id: id.clone(),
                    kind: DocumentKind::Batch,
                    report: &report,
                },
            )
            .await?
        {
            return Ok(report);
        }
        self.read_conflicting(&id).await
    }

    async fn put_batch(&self, report: BatchReport) -> Result<(), StoreError> {
        let id = batch_document_id(report.stored_id());
        let document = BatchDocument {
            id: id.clone(),
            kind: DocumentKind::Batch,
            report: &report,
        };
        match self
            .backstop
            .bound(self.container.upsert_item(id.clone(), &id, &document, None))
            .await?
        {
            Ok(_) => Ok(()),
            Err(err) => Err(map_error(&err)),
        }
    }

    /// Read with `_etag`, compare, replace with If-Match on it: a report written between the read
    /// and the replace makes it 412, and nothing is written.
    async fn put_batch_if(
        &self,
        report: BatchReport,
        expected: &BatchReport,
    ) -> Result<bool, StoreError> {
        let id = batch_document_id(report.batch_id);
        match self.read_tagged::<BatchReport>(&id).await? {
            Some((stored, etag)) if stored == *expected => {
                let document = BatchDocument {
                    id: id.clone(),
                    kind: DocumentKind::Batch,
                    report: &report,
                };
                self.replace_if(&id, &document, etag).await
            }
            _ => Ok(false),
        }
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<BatchReport>, StoreError> {
        self.read(&batch_document_id(id)).await
    }

    /// One cross-partition query (the SDK fans it out over the physical partitions and merges the
    /// ordered results); its request charge is logged at debug level for capacity planning.
    async fn list(&self, query: &ListQuery, max: usize) -> Result<Vec<Record>, StoreError> {
        let sql = list_query(query, max)?;
        let collect = async {
            let mut pages = Box::pin(
                self.container
                    .query_items::<Record>(sql, FeedScope::full_container(), None)
                    .await?
                    .into_pages(),
            );
            let mut records = Vec::with_capacity(max.min(ListQuery::MAX_LIMIT + 1));
            let mut charge = 0.0_f64;
            while let Some(page) = pages.try_next().await? {
                charge += page.headers().request_charge().map_or(0.0, |c| c.value());
                records.extend(page.into_items());
                if records.len() >= max {
                    break;
                }
            }
            tracing::debug!(
                request_charge = charge,
                records = records.len(),
                "list page"
            );
            records.truncate(max);
            Ok::<_, CosmosError>(records)
        };
        self.backstop
            .bound(collect)
            .await?
            .map_err(|e| map_error(&e))
    }

    /// A point read of a document that never exists: 404 means the container answers.
    async fn check(&self) -> Result<(), StoreError> {
        match self
            .backstop
            .bound(
                self.container
                    .read_item(READINESS_PROBE_ID, READINESS_PROBE_ID, None),
            )
            .await?
        {
            Err(err) if !is_missing_document(err.status()) => Err(map_error(&err)),
            _ => Ok(()),
        }
    }

    fn backend(&self) -> &'static str {
        "cosmos"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BatchMessage, NewRecord};

    fn record() -> Record {
        let fields: NewRecord = serde_json::from_value(serde_json::json!({
            "site_id": "SITE001", "trial_phase": "II", "submission_date": "2025-03-15",
            "status": "pending", "patient_count": 42, "notes": "n"
        }))
        .expect("valid fields");
        Record::new(RecordId::random(), fields)
    }

    #[test]
    fn a_record_document_is_the_record_plus_kind_and_reads_back_as_the_record() {
        let record = record();
        let document = serde_json::to_value(RecordDocument {
            record: &record,
            kind: DocumentKind::Record,
        })
        .expect("json");
        assert_eq!(
            document["id"],
            record.id.to_string(),
            "id is the record id (and the partition key)"
        );
        assert_eq!(document["kind"], "record");
        // What Cosmos hands back carries system properties too; they must not get in the way.
        let mut stored = document.clone();
        stored["_rid"] = "abc==".into();
        stored["_etag"] = "\"0\"".into();
        stored["_ts"] = 1_700_000_000.into();
        let back: Record = serde_json::from_value(stored).expect("reads back");
        assert_eq!(back, record);
    }

    #[test]
    fn a_batch_document_has_a_prefixed_id_that_no_record_id_can_take() {
        let message = BatchMessage::from_value(serde_json::json!({
            "batch_id": "0b5e5ad4-3d1c-4a8e-9d0e-4a4f4b1f2c3d", "records": [{}]
        }))
        .expect("valid batch");
        let report = BatchReport::queued(&message);
        let id = batch_document_id(report.stored_id());
        assert_eq!(id, "batch-0b5e5ad4-3d1c-4a8e-9d0e-4a4f4b1f2c3d");
        assert!(
            RecordId::parse(&id).is_none(),
            "a batch document id never parses as a record id"
        );
        let document = serde_json::to_value(BatchDocument {
            id: id.clone(),
            kind: DocumentKind::Batch,
            report: &report,
        })
        .expect("json");
        assert_eq!(document["id"], id);
        assert_eq!(document["kind"], "batch");
        let back: BatchReport = serde_json::from_value(document).expect("reads back");
        assert_eq!(back, report);
    }
}
