//! `Idempotency-Key` on POST /records: a retry never creates a second record. The router in
//! process (`support::router`): nothing here needs a process or a socket.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::router::{Answer, Setup, TestApp, spawn_app};
use crate::support::valid_record;

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> Answer {
    app.post("/records")
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
}

#[tokio::test]
async fn the_same_key_and_body_return_the_same_record() {
    let app = spawn_app(Setup::default()).await;
    let key = uuid::Uuid::new_v4().to_string();
    let first = post_with_key(&app, &key, &valid_record()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let first = first.json();
    // Concurrent retries too: one record.
    let mut retries = Vec::new();
    for _ in 0..10 {
        let (app, key) = (app.clone(), key.clone());
        retries.push(tokio::spawn(async move {
            post_with_key(&app, &key, &valid_record()).await
        }));
    }
    for retry in retries {
        let retry = retry.await.expect("join");
        assert_eq!(retry.status, StatusCode::CREATED);
        assert_eq!(retry.header("idempotent-replayed"), "true");
        assert_eq!(retry.json(), first);
    }
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_a_conflict() {
    let app = spawn_app(Setup::default()).await;
    let key = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        post_with_key(&app, &key, &valid_record()).await.status,
        StatusCode::CREATED
    );
    let mut other = valid_record();
    other["patient_count"] = Value::from(43);
    let response = post_with_key(&app, &key, &other).await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    let body = response.json();
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Idempotency-Key"))
    );
}

#[tokio::test]
async fn a_normalised_equal_body_is_the_same_request() {
    let app = spawn_app(Setup::default()).await;
    let key = uuid::Uuid::new_v4().to_string();
    let first = post_with_key(&app, &key, &valid_record()).await.json();
    let mut upper = valid_record();
    upper["site_id"] = Value::from("SITE001");
    let again = post_with_key(&app, &key, &upper).await;
    assert_eq!(
        again.status,
        StatusCode::CREATED,
        "site_id is stored upper-cased either way"
    );
    assert_eq!(again.json()["id"], first["id"]);
}

#[tokio::test]
async fn different_keys_make_different_records_and_bad_keys_are_refused() {
    let app = spawn_app(Setup::default()).await;
    let a = post_with_key(&app, "key-a", &valid_record()).await.json();
    let b = post_with_key(&app, "key-b", &valid_record()).await.json();
    assert_ne!(a["id"], b["id"]);
    let long = "k".repeat(256);
    for bad in [long.as_str(), "has space", "tab\tkey"] {
        let response = post_with_key(&app, bad, &valid_record()).await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert_eq!(
            response.json()["detail"][0]["loc"],
            serde_json::json!(["header", "idempotency-key"])
        );
    }
}
