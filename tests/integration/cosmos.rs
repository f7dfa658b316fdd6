//! The Cosmos DB backend through the running binary: reads are point reads, throttling is retried
//! within a bounded budget and then answered 503, and an outage (mid-run or at start) costs
//! availability but never an acknowledged record.
//!
//! Tests that inject faults use a dedicated emulator: a fault hits every database in it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::cosmos_emulator::{CosmosContainer, CosmosEmulator};
use crate::support::{App, AppOptions, valid_record};

/// The slowest a 503 may be in coming: the store's 5 s operation deadline plus slack for a
/// loaded 2-core machine. A hung request would blow far past it.
const BOUNDED: Duration = Duration::from_secs(9);

/// Starts the binary on `container`; returns once `/health` answers (not necessarily `/ready`).
async fn start_app(container: &CosmosContainer) -> App {
    let options = container
        .env()
        .into_iter()
        .fold(AppOptions::default().no_wait_ready(), |o, (k, v)| {
            o.env(&k, v)
        });
    App::start(options).await
}

async fn post_record(app: &App) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/records"))
        .json(&valid_record())
        .send()
        .await
        .expect("POST /records")
}

async fn get(app: &App, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Asserts a 503 with a `Retry-After` of at least one second, answered within [`BOUNDED`].
fn assert_unavailable(what: &str, started: Instant, response: &reqwest::Response) {
    let elapsed = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
    assert!(elapsed < BOUNDED, "{what}: the 503 took {elapsed:?}");
}

#[tokio::test]
async fn get_record_is_a_point_read_not_a_query() {
    let emulator = CosmosEmulator::shared();
    let container = emulator.fresh_container().await;
    let app = start_app(&container).await;
    app.wait_until_ready().await;
    let created: Value = post_record(&app).await.json().await.expect("json");
    let id = created["id"].as_str().expect("id");

    let before = emulator.kinds(&container.database).await;
    let response = get(&app, &format!("/records/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("json"), created);
    let missing = get(&app, &format!("/records/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let after = emulator.kinds(&container.database).await;

    let delta =
        |kind: &str| after.get(kind).copied().unwrap_or(0) - before.get(kind).copied().unwrap_or(0);
    assert_eq!(
        delta("read_doc"),
        2,
        "one point read per GET (found and not found): {after:?}"
    );
    assert_eq!(
        after.get("query_docs"),
        None,
        "the service never queries: {after:?}"
    );
    assert_eq!(
        after.get("read_feed"),
        None,
        "nor reads the feed: {after:?}"
    );
}

#[tokio::test]
async fn throttling_is_retried_within_a_budget_then_answered_503_until_it_clears() {
    let emulator = CosmosEmulator::dedicated();
    let container = emulator.fresh_container().await;
    let app = start_app(&container).await;
    app.wait_until_ready().await;
    let created: Value = post_record(&app).await.json().await.expect("json");
    let path = format!("/records/{}", created["id"].as_str().expect("id"));

    // A short burst: the SDK waits out x-ms-retry-after-ms and the client never notices.
    let throttled_before = emulator.throttled().await;
    emulator.throttle(3, 50, Some(&["read_doc"])).await;
    let response = get(&app, &path).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a short burst of 429s is absorbed"
    );
    assert_eq!(
        emulator.throttled().await - throttled_before,
        3,
        "the burst really hit the read"
    );

    // A storm: the retry budget runs out and the client is told when to come back.
    emulator.throttle(100_000, 100, None).await;
    let started = Instant::now();
    assert_unavailable("GET during a 429 storm", started, &get(&app, &path).await);
    let started = Instant::now();
    assert_unavailable("POST during a 429 storm", started, &post_record(&app).await);

    // Cleared: everything works again.
    emulator.throttle(0, 0, None).await;
    assert_eq!(get(&app, &path).await.status(), StatusCode::OK);
    assert_eq!(post_record(&app).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_outage_answers_503_and_loses_no_acknowledged_record() {
    let emulator = CosmosEmulator::dedicated();
    let container = emulator.fresh_container().await;
    let app = start_app(&container).await;
    app.wait_until_ready().await;
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        let response = post_record(&app).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        acknowledged.push(response.json::<Value>().await.expect("json"));
    }

    emulator.down().await;
    let started = Instant::now();
    assert_unavailable(
        "POST while Cosmos is down",
        started,
        &post_record(&app).await,
    );
    let path = format!("/records/{}", acknowledged[0]["id"].as_str().expect("id"));
    let started = Instant::now();
    assert_unavailable("GET while Cosmos is down", started, &get(&app, &path).await);
    let started = Instant::now();
    let ready = get(&app, "/ready").await;
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready while the store is down"
    );
    assert!(
        started.elapsed() < BOUNDED,
        "readiness answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        get(&app, "/health").await.status(),
        StatusCode::OK,
        "but alive"
    );

    emulator.up().await;
    app.wait_until_ready().await;
    for record in &acknowledged {
        let response = get(
            &app,
            &format!("/records/{}", record["id"].as_str().expect("id")),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "acknowledged before the outage: {}",
            record["id"]
        );
        assert_eq!(&response.json::<Value>().await.expect("json"), record);
    }
    assert_eq!(
        post_record(&app).await.status(),
        StatusCode::CREATED,
        "writes work again"
    );
}

#[tokio::test]
async fn starting_while_cosmos_is_down_is_alive_not_ready_until_it_is_up() {
    let emulator = CosmosEmulator::dedicated();
    let container = emulator.fresh_container().await;
    emulator.down().await;
    let app = start_app(&container).await; // returns once /health answers 200
    assert_eq!(get(&app, "/health").await.status(), StatusCode::OK);
    assert_eq!(
        get(&app, "/ready").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let response = post_record(&app).await;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no store yet: nothing stored"
    );
    assert!(response.headers().contains_key("retry-after"));

    emulator.up().await;
    app.wait_until_ready().await;
    assert_eq!(post_record(&app).await.status(), StatusCode::CREATED);
}
