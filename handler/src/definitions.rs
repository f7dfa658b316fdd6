//! `host.json` and `function-definitions/<name>/function.json`, embedded at build time and parsed
//! once into types (binding kinds and directions are enums: a typo fails the parse, caught by the
//! unit tests, not a lookup at run time). The standalone host builds its routes and queue trigger
//! from these, the Functions host reads the same files from disk: one source of truth for both.

use std::time::Duration;

use serde::Deserialize;

use crate::queue::QueueSettings;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/definitions.rs"));
}

/// A binding's `type`: the kinds this service uses (any other fails the parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BindingKind {
    /// `httpTrigger`: an HTTP request starts the function.
    HttpTrigger,
    /// `http`: the HTTP response (an output).
    Http,
    /// `queueTrigger`: a queue message starts the function.
    QueueTrigger,
    /// `queue`: a queue message to send (an output).
    Queue,
}

/// A binding's `direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    In,
    Out,
}

/// One binding of a function.json.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    #[serde(rename = "type")]
    pub kind: BindingKind,
    pub direction: Direction,
    pub name: String,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub queue_name: Option<String>,
    #[serde(default)]
    pub connection: Option<String>,
}

/// A function: its name (the folder name) and bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDefinition {
    pub name: String,
    pub bindings: Vec<Binding>,
}

/// An HTTP trigger: the public route (axum syntax, leading `/`) and its methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger<'a> {
    pub path: String,
    pub methods: &'a [String],
}

/// A queue trigger: the queue and the connection setting's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueTrigger<'a> {
    pub queue_name: &'a str,
    pub connection: &'a str,
}

impl FunctionDefinition {
    pub fn http_trigger(&self) -> Option<HttpTrigger<'_>> {
        self.bindings
            .iter()
            .find(|b| b.kind == BindingKind::HttpTrigger)
            .map(|b| HttpTrigger {
                path: format!("/{}", b.route.as_deref().unwrap_or(&self.name)),
                methods: &b.methods,
            })
    }

    pub fn queue_trigger(&self) -> Option<QueueTrigger<'_>> {
        self.bindings
            .iter()
            .find(|b| b.kind == BindingKind::QueueTrigger)
            .map(|b| QueueTrigger {
                queue_name: b.queue_name.as_deref().unwrap_or_default(),
                connection: b.connection.as_deref().unwrap_or("AzureWebJobsStorage"),
            })
    }

    /// The queue trigger binding's name (where the invocation carries the message).
    pub fn queue_trigger_binding(&self) -> Option<&str> {
        self.bindings
            .iter()
            .find(|b| b.kind == BindingKind::QueueTrigger)
            .map(|b| b.name.as_str())
    }

    /// The queue output binding's name, if the function has one.
    pub fn queue_output(&self) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|b| b.kind == BindingKind::Queue && b.direction == Direction::Out)
    }

    /// Whether the Functions host forwards the raw HTTP request (`enableForwardingHttpRequest`):
    /// only for exactly one `httpTrigger` in and one `http` out. Otherwise it sends the
    /// `{"Data","Metadata"}` envelope to `POST /<name>`.
    pub fn is_forwarded(&self) -> bool {
        let trigger_in = self
            .bindings
            .iter()
            .filter(|b| b.kind == BindingKind::HttpTrigger && b.direction == Direction::In)
            .count();
        let http_out = self
            .bindings
            .iter()
            .filter(|b| b.kind == BindingKind::Http && b.direction == Direction::Out)
            .count();
        trigger_in == 1 && http_out == 1 && self.bindings.len() == 2
    }
}

#[derive(Debug, Deserialize)]
struct FunctionJson {
    bindings: Vec<Binding>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueuesJson {
    max_polling_interval: Option<String>,
    visibility_timeout: Option<String>,
    batch_size: Option<u32>,
    new_batch_threshold: Option<u32>,
    max_dequeue_count: Option<u32>,
    message_encoding: Option<String>,
}

/// All functions and the host settings.
#[derive(Debug, Clone)]
pub struct Definitions {
    pub functions: Vec<FunctionDefinition>,
    pub queues: QueueSettings,
    /// host.json `functionTimeout` (`AzureFunctionsJobHost__functionTimeout` overrides it);
    /// `None` when absent or `-1` (unbounded).
    pub function_timeout: Option<Duration>,
}

/// A definition file that does not parse (a build-time mistake; the tests catch it).
#[derive(Debug, thiserror::Error)]
#[error("invalid function definition {file}: {reason}")]
pub struct DefinitionError {
    file: String,
    reason: String,
}

impl Definitions {
    /// The definitions compiled into this binary.
    pub fn embedded() -> Result<Self, DefinitionError> {
        Self::parse(embedded::FUNCTIONS, embedded::HOST_JSON)
    }

    /// [`Self::embedded`] with the app settings' overrides of host.json applied (queue settings,
    /// `functionTimeout`), as the Functions host applies them.
    pub fn embedded_with_overrides(
        config: &crate::config::Config,
    ) -> Result<Self, DefinitionError> {
        let mut definitions = Self::embedded()?;
        definitions.apply_queue_overrides(&config.queue_overrides)?;
        definitions.apply_function_timeout_override(config.function_timeout_override.as_deref())?;
        Ok(definitions)
    }

    pub fn parse(functions: &[(&str, &str)], host_json: &str) -> Result<Self, DefinitionError> {
        let functions = functions
            .iter()
            .map(|(name, json)| {
                serde_json::from_str::<FunctionJson>(json)
                    .map(|f| FunctionDefinition {
                        name: (*name).to_owned(),
                        bindings: f.bindings,
                    })
                    .map_err(|e| DefinitionError {
                        file: format!("{name}/function.json"),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let host_error = |reason: String| DefinitionError {
            file: "host.json".into(),
            reason,
        };
        let host: serde_json::Value =
            serde_json::from_str(host_json).map_err(|e| host_error(e.to_string()))?;
        let queues: QueuesJson = serde_json::from_value(host["extensions"]["queues"].clone())
            .map_err(|e| host_error(e.to_string()))?;
        let duration =
            |raw: Option<String>, default: Duration| -> Result<Duration, DefinitionError> {
                raw.map_or(Ok(default), |raw| {
                    parse_timespan(&raw).ok_or_else(|| host_error(format!("bad timespan {raw}")))
                })
            };
        let batch_size = queues.batch_size.unwrap_or(16);
        let function_timeout = match &host["functionTimeout"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(raw) => function_timeout(raw).map_err(&host_error)?,
            other => return Err(host_error(format!("bad functionTimeout {other}"))),
        };
        Ok(Self {
            functions,
            function_timeout,
            queues: QueueSettings {
                max_polling_interval: duration(
                    queues.max_polling_interval,
                    Duration::from_secs(60),
                )?,
                visibility_timeout: duration(queues.visibility_timeout, Duration::ZERO)?,
                batch_size,
                new_batch_threshold: queues.new_batch_threshold.unwrap_or(batch_size / 2),
                max_dequeue_count: queues.max_dequeue_count.unwrap_or(5),
                base64: !queues
                    .message_encoding
                    .is_some_and(|e| e.eq_ignore_ascii_case("none")),
            },
        })
    }

    /// Applies app-setting overrides of host.json's queue settings, as the Functions host does:
    /// `AzureFunctionsJobHost__extensions__queues__<setting>` (e.g. `visibilityTimeout`).
    pub fn apply_queue_overrides(
        &mut self,
        overrides: &[(String, String)],
    ) -> Result<(), DefinitionError> {
        let bad = |name: &str, value: &str| DefinitionError {
            file: format!("{}{name}", crate::config::QUEUE_OVERRIDE_PREFIX),
            reason: format!("unusable value {value:?}"),
        };
        for (name, value) in overrides {
            let number = || value.parse::<u32>().map_err(|_| bad(name, value));
            let timespan = || parse_timespan(value).ok_or_else(|| bad(name, value));
            let queues = &mut self.queues;
            match name.to_ascii_lowercase().as_str() {
                "maxpollinginterval" => queues.max_polling_interval = timespan()?,
                "visibilitytimeout" => queues.visibility_timeout = timespan()?,
                "batchsize" => queues.batch_size = number()?,
                "newbatchthreshold" => queues.new_batch_threshold = number()?,
                "maxdequeuecount" => queues.max_dequeue_count = number()?,
                "messageencoding" => queues.base64 = !value.eq_ignore_ascii_case("none"),
                _ => return Err(bad(name, value)),
            }
        }
        Ok(())
    }

    /// Applies `AzureFunctionsJobHost__functionTimeout` (an app setting overriding host.json, as
    /// the Functions host reads it).
    pub fn apply_function_timeout_override(
        &mut self,
        raw: Option<&str>,
    ) -> Result<(), DefinitionError> {
        if let Some(raw) = raw {
            self.function_timeout = function_timeout(raw).map_err(|reason| DefinitionError {
                file: crate::config::FUNCTION_TIMEOUT_OVERRIDE.into(),
                reason,
            })?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&FunctionDefinition> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// The host.json compiled into this binary (the HTTP limits are read from it by
/// [`crate::api::admission`]).
pub fn host_json() -> &'static str {
    embedded::HOST_JSON
}

/// `functionTimeout`: a timespan, or `-1` (unbounded: `None`).
fn function_timeout(raw: &str) -> Result<Option<Duration>, String> {
    if raw.trim() == "-1" {
        return Ok(None);
    }
    parse_timespan(raw)
        .filter(|d| !d.is_zero())
        .map(Some)
        .ok_or_else(|| format!("bad functionTimeout {raw:?}"))
}

/// Parses a .NET `TimeSpan` as host.json writes it: `hh:mm:ss` or `d.hh:mm:ss`.
pub fn parse_timespan(raw: &str) -> Option<Duration> {
    let (days, rest) = match raw.split_once('.') {
        Some((d, rest)) if rest.contains(':') && !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, raw),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    let seconds: f64 = s.parse().ok()?;
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    if m >= 60 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    Some(Duration::from_secs(days * 86_400 + h * 3600 + m * 60) + Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_definitions_parse_and_state_the_queue_contract() {
        let defs = Definitions::embedded().expect("embedded definitions parse");
        let ingest = defs.get("ingest_batch").expect("ingest_batch is defined");
        assert_eq!(
            ingest.queue_trigger(),
            Some(QueueTrigger {
                queue_name: "mediflow-batches",
                connection: "MEDIFLOW_QUEUE"
            })
        );
        assert_eq!(defs.queues.max_dequeue_count, 5);
        assert_eq!(defs.queues.visibility_timeout, Duration::from_secs(30));
        assert!(defs.queues.base64);
        assert_eq!(defs.function_timeout, Some(Duration::from_secs(300)));
        assert!(
            defs.get("submit_batch")
                .is_some_and(|f| !f.is_forwarded() && f.queue_output().is_some())
        );
        assert!(
            defs.get("get_record")
                .is_some_and(FunctionDefinition::is_forwarded)
        );
        assert_eq!(
            defs.get("get_record")
                .and_then(super::FunctionDefinition::http_trigger)
                .map(|t| t.path),
            Some("/records/{id}".to_owned())
        );
    }

    #[test]
    fn app_settings_override_host_json_queue_settings() {
        let mut defs = Definitions::embedded().expect("embedded definitions parse");
        let overrides = [
            ("visibilityTimeout".to_owned(), "00:00:02".to_owned()),
            ("maxDequeueCount".to_owned(), "3".to_owned()),
        ];
        defs.apply_queue_overrides(&overrides)
            .expect("valid overrides");
        assert_eq!(
            (
                defs.queues.visibility_timeout,
                defs.queues.max_dequeue_count
            ),
            (Duration::from_secs(2), 3)
        );
        for bad in [
            ("batchSize", "many"),
            ("visibilityTimeout", "30"),
            ("unknownSetting", "1"),
        ] {
            let overrides = [(bad.0.to_owned(), bad.1.to_owned())];
            assert!(defs.apply_queue_overrides(&overrides).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_function_timeout_setting_overrides_host_json() {
        let mut defs = Definitions::embedded().expect("embedded definitions parse");
        // (setting, resulting timeout)
        for (raw, expected) in [
            (None, Some(Duration::from_secs(300))),
            (Some("00:00:06"), Some(Duration::from_secs(6))),
            (Some("-1"), None),
        ] {
            defs.apply_function_timeout_override(raw).expect("valid");
            assert_eq!(defs.function_timeout, expected, "{raw:?}");
        }
        for bad in ["5", "00:00:00", "soon"] {
            assert!(
                defs.apply_function_timeout_override(Some(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn timespans_parse_like_dotnet() {
        for (raw, expected) in [
            ("00:00:30", Some(30)),
            ("00:01:00", Some(60)),
            ("1.00:00:00", Some(86_400)),
            ("00:61:00", None),
            ("30", None),
            ("", None),
        ] {
            assert_eq!(parse_timespan(raw).map(|d| d.as_secs()), expected, "{raw}");
        }
    }
}
