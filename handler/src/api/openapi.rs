//! The OpenAPI 3 document at `/openapi.json`, generated from the handlers' annotations and the
//! schemas of the domain's wire types ([`super::schemas`], held against the domain by a test), so
//! it cannot drift from the code without a test or the schemathesis run noticing.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::schemas::{
    BatchReportSchema, BatchStateSchema, FieldErrorSchema, RecordPageSchema, RecordSchema,
    RejectedRecordSchema, StatusSchema, TrialPhaseSchema,
};

/// A submission as clients send it (no unknown fields; `notes` optional).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    #[schema(pattern = "^[A-Za-z0-9]{3,20}$", example = "site001")]
    pub site_id: String,
    pub trial_phase: TrialPhaseSchema,
    #[schema(format = Date, example = "2025-03-15")]
    pub submission_date: String,
    pub status: StatusSchema,
    #[schema(minimum = 1, maximum = 10000, example = 42)]
    pub patient_count: i64,
    #[schema(max_length = 500, default = "")]
    pub notes: Option<String>,
}

/// A batch message: the body of POST /batches and the text of a queue message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    #[schema(format = Uuid)]
    pub batch_id: String,
    /// Each item is judged like a POST /records body; invalid items are reported, not stored.
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<Object>)]
    pub records: Vec<serde_json::Value>,
}

/// The body of POST /records/{id}/review.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    /// `validated` or `rejected`.
    #[schema(pattern = "^(validated|rejected)$", example = "validated")]
    pub status: String,
    #[schema(
        min_length = 1,
        max_length = 500,
        example = "Source documents verified"
    )]
    pub reason: String,
}

/// One audit event (hash-chained; see docs/adr/0010-identities-and-audit-trail.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventDoc {
    pub chain: String,
    pub seq: u64,
    #[schema(example = "2026-12-07T05:06:07.123456Z")]
    pub time: String,
    pub client: String,
    #[schema(example = "review")]
    pub action: String,
    pub record_ids: Vec<String>,
    pub batch_id: Option<String>,
    pub request_id: Option<String>,
    pub outcome: String,
    pub old_status: Option<String>,
    pub new_status: Option<String>,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// A page of audit events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPageDoc {
    pub events: Vec<AuditEventDoc>,
    pub continuation: Option<String>,
}

/// A record's audit events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryDoc {
    pub record_id: String,
    pub events: Vec<AuditEventDoc>,
}

/// `{"detail": "<message>"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Detail {
    pub detail: String,
}

/// `{"detail": [<field error>, ...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationErrors {
    pub detail: Vec<FieldErrorSchema>,
}

/// `{"status": "ok", "version": "1.0.0"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `{"status": "ready", "auth": {...}}` or `{"status": "unavailable", "auth": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub auth: AuthReadiness,
}

/// The key file in force: `{"status": "current", "format": "table", "clients": 3}`; while the
/// file's content is refused, `"status": "stale"` and `"problem"` says why (the previous content
/// stays in force; `/ready`'s status code does not change).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthReadiness {
    /// `off`, `current` or `stale`.
    pub status: String,
    /// `off`, `legacy` or `table`.
    pub format: String,
    pub clients: usize,
    pub problem: Option<String>,
}

#[derive(Debug)]
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "api_key",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
            );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "MediFlow Functions", description = "Clinical-trial record ingestion"),
    paths(
        super::records::create, super::records::get, super::records::list, super::records::review,
        super::audit::history, super::audit::page,
        super::batches::submit, super::batches::get,
        super::health::health, super::health::ready,
    ),
    components(schemas(
        RecordSchema, RecordPageSchema, RecordInput, BatchInput, BatchReportSchema, BatchStateSchema,
        RejectedRecordSchema, FieldErrorSchema,
        Detail, ValidationErrors, Health, Readiness, AuthReadiness, ReviewInput, AuditEventDoc, AuditPageDoc, HistoryDoc,
    )),
    modifiers(&ApiKeyScheme),
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The document, built once.
pub fn spec() -> &'static serde_json::Value {
    static SPEC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// GET /openapi.json
pub async fn document() -> Json<&'static serde_json::Value> {
    Json(spec())
}
