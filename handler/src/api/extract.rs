//! The request extractors: the JSON body (content type or none, a size limit, errors in the API's
//! own shape, never axum's plain-text rejections) and the query's decoded parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};

use super::AppState;
use super::error::ApiError;

/// Largest request body accepted on any route.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A request body declared as JSON (or undeclared, as the previous service accepted), at most
/// [`MAX_BODY_BYTES`], sent within the body read timeout ([`crate::config::HttpTimeouts`]: a
/// slow-body client holds a connection, not a thread, and then hears 408). The bytes are decoded
/// by the domain, which reports every field error.
#[derive(Debug)]
pub struct JsonBody(pub Bytes);

/// True for `application/json` and `application/<anything>+json`, with any parameters.
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// A body may be declared as JSON or not declared at all (as the previous service accepted);
/// anything else is 415. Shared with the Functions envelope adapter.
pub fn check_declared_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE) {
        Some(declared) if !declared.to_str().is_ok_and(is_json_content_type) => {
            Err(ApiError::UnsupportedMediaType)
        }
        _ => Ok(()),
    }
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        check_declared_json(req.headers())?;
        let too_large = ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        };
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_length.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(too_large);
        }
        let read = tokio::time::timeout(
            state.timeouts.body_read,
            axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES),
        );
        read.await
            .map_err(|_| ApiError::RequestTimeout)?
            .map(JsonBody)
            .map_err(|err| {
                let is_limit = std::error::Error::source(&err).is_some_and(
                    <dyn std::error::Error + 'static>::is::<http_body_util::LengthLimitError>,
                );
                if is_limit {
                    too_large
                } else {
                    ApiError::BodyUnreadable
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_content_type;

    #[test]
    fn json_media_types_are_recognised() {
        for (value, expected) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("application/jsonx", false),
            ("", false),
        ] {
            assert_eq!(is_json_content_type(value), expected, "{value}");
        }
    }
}

/// A request's query parameters, decoded (`application/x-www-form-urlencoded`: `+` and
/// percent escapes), in the order sent, duplicates kept: the use cases judge names and values.
/// Never refuses a request: a malformed escape decodes as the bytes it spells, as browsers do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        Ok(Self(
            url::form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}
