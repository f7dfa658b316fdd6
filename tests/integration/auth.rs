//! API keys from the Key Vault CSI file: required on every data route, re-read on rotation.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{App, AppOptions, valid_record};

struct KeyedApp {
    app: App,
    key_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn app_with_keys(content: &str) -> KeyedApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("api-keys");
    std::fs::write(&key_file, content).expect("write keys");
    let app = App::start(
        AppOptions::default().env("MEDIFLOW_API_KEYS_FILE", key_file.display().to_string()),
    )
    .await;
    KeyedApp {
        app,
        key_file,
        _dir: dir,
    }
}

async fn status_with_key(app: &App, key: Option<&str>) -> StatusCode {
    let mut request = reqwest::Client::new()
        .post(app.url("/records"))
        .json(&valid_record());
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.expect("POST").status()
}

/// Every HTTP function in function-definitions/ that is not public must refuse a request without
/// a key: a new route added without auth fails this test.
#[tokio::test]
async fn every_data_route_refuses_requests_without_a_valid_key() {
    let keyed = app_with_keys("k-current\n").await;
    let definitions = handler::definitions::Definitions::embedded().expect("definitions");
    let client = reqwest::Client::new();
    let mut protected = 0;
    for function in &definitions.functions {
        let Some(trigger) = function.http_trigger() else {
            continue;
        };
        let path = trigger
            .path
            .replace("{id}", "1d0d5edd-9738-453c-8966-aaa2be88a9f5")
            .replace("{batch_id}", "1d0d5edd-9738-453c-8966-aaa2be88a9f5");
        for method in trigger.methods {
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .expect("method");
            let public = handler::api::PUBLIC_FUNCTIONS.contains(&function.name.as_str());
            for key in [None, Some("wrong"), Some("")] {
                let mut request = client
                    .request(method.clone(), keyed.app.url(&path))
                    .json(&json!({}));
                if let Some(key) = key {
                    request = request.header("x-api-key", key);
                }
                let response = request.send().await.expect("request");
                if public {
                    assert_ne!(
                        response.status(),
                        StatusCode::UNAUTHORIZED,
                        "{} is public",
                        function.name
                    );
                } else {
                    assert_eq!(
                        response.status(),
                        StatusCode::UNAUTHORIZED,
                        "{} {method} {path} with key {key:?}",
                        function.name
                    );
                    let body: Value = response.json().await.expect("json");
                    assert!(
                        body["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains("X-API-Key"))
                    );
                }
            }
            if !public {
                protected += 1;
            }
        }
    }
    assert!(
        protected >= 4,
        "records and batches routes are protected ({protected})"
    );
    assert_eq!(
        status_with_key(&keyed.app, Some("k-current")).await,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_rotated_key_file_is_picked_up_without_restart() {
    let keyed = app_with_keys("k-old\n").await;
    assert_eq!(
        status_with_key(&keyed.app, Some("k-old")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status_with_key(&keyed.app, Some("k-new")).await,
        StatusCode::UNAUTHORIZED
    );

    // During a rotation the secret holds both keys; both work.
    std::fs::write(&keyed.key_file, "k-old\nk-new\n").expect("write");
    wait_for(&keyed.app, Some("k-new"), StatusCode::CREATED).await;
    assert_eq!(
        status_with_key(&keyed.app, Some("k-old")).await,
        StatusCode::CREATED
    );

    // After it, the old key is refused. The CSI driver swaps files atomically: do the same.
    let staged = keyed.key_file.with_extension("staged");
    std::fs::write(&staged, "k-new\n").expect("write");
    std::fs::rename(&staged, &keyed.key_file).expect("rename");
    wait_for(&keyed.app, Some("k-old"), StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        status_with_key(&keyed.app, Some("k-new")).await,
        StatusCode::CREATED
    );
}

async fn wait_for(app: &App, key: Option<&str>, expected: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status_with_key(app, key).await;
        if status == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "key {key:?} still answers {status}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn health_and_readiness_stay_open_with_auth_on() {
    let keyed = app_with_keys("k\n").await;
    for path in ["/health", "/ready", "/openapi.json", "/metrics"] {
        let response = reqwest::get(keyed.app.url(path)).await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn keys_bodies_and_patient_data_never_reach_the_logs() {
    let keyed = app_with_keys("super-secret-key-7731\n").await;
    let mut body = valid_record();
    body["notes"] = Value::from("PATIENT-NOTE-Jane-Doe-1962");
    body["site_id"] = Value::from("SITEZQX42");
    let client = reqwest::Client::new();
    for key in ["super-secret-key-7731", "wrong-key-9921"] {
        client
            .post(keyed.app.url("/records"))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .expect("POST");
    }
    let mut invalid = body.clone();
    invalid["patient_count"] = json!("PATIENT-COUNT-SECRET");
    client
        .post(keyed.app.url("/records"))
        .header("x-api-key", "super-secret-key-7731")
        .json(&invalid)
        .send()
        .await
        .expect("POST");
    // All three requests are in the access log before the absences are checked (the log is
    // written by a background thread, so it may trail the responses).
    keyed
        .app
        .wait_for_logs(Duration::from_secs(10), |lines| {
            lines
                .iter()
                .filter(|l| l.contains("request answered") && l.contains("/records"))
                .count()
                >= 3
        })
        .await;
    let logs = keyed.app.logs().join("\n");
    for secret in [
        "super-secret-key-7731",
        "wrong-key-9921",
        "PATIENT-NOTE",
        "SITEZQX42",
        "PATIENT-COUNT-SECRET",
        "Jane",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn auth_off_without_a_key_file_is_announced_loudly() {
    let app = App::standalone().await;
    assert_eq!(status_with_key(&app, None).await, StatusCode::CREATED);
    assert!(
        app.logs()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("auth is OFF"))
    );
}
