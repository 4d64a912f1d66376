//! How both clients turn an HTTP exchange into a `RailError`, in one place,
//! so M-Pesa and MoMo classify outages, refusals and silence the same way.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::RailError;

/// Which provider's error envelope to look for in a body.
#[derive(Clone, Copy)]
pub(crate) enum Provider {
    /// `{"requestId", "errorCode", "errorMessage"}`
    Daraja,
    /// `{"code", "message"}`
    Momo,
}

/// A sending failure: unreachable is `Unavailable`; sent but silent is `NoAnswer`.
pub(crate) fn send_error(e: reqwest::Error) -> RailError {
    if e.is_connect() {
        RailError::Unavailable(format!("cannot connect: {e}"))
    } else if e.is_timeout() {
        RailError::NoAnswer(format!("no answer in time: {e}"))
    } else {
        RailError::Unavailable(format!("request failed: {e}"))
    }
}

/// Sends a request and reads the whole answer; the body read counts towards
/// the timeout, so a server that sends headers and then stalls is `NoAnswer`.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, Vec<u8>), RailError> {
    let response = request.send().await.map_err(send_error)?;
    let status = response.status();
    let body = response.bytes().await.map_err(send_error)?;
    Ok((status, body.to_vec()))
}

/// The provider's error code and message in a body, when it carries one.
pub(crate) fn provider_error(provider: Provider, body: &[u8]) -> Option<(String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let (code_key, message_key) = match provider {
        Provider::Daraja => ("errorCode", "errorMessage"),
        Provider::Momo => ("code", "message"),
    };
    let code = text(value.get(code_key)?)?;
    if code.is_empty() {
        return None;
    }
    let message = value.get(message_key).and_then(text).unwrap_or_default();
    Some((code, message))
}

/// A JSON scalar as text (strings without their quotes).
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A provider error code under any status is a refusal (Daraja answers a
/// locked subscriber with HTTP 500 + errorCode); otherwise 4xx is a refusal,
/// 5xx/429 an outage, and a 2xx must parse as `T`.
pub(crate) fn classify<T: DeserializeOwned>(
    provider: Provider,
    status: StatusCode,
    body: &[u8],
) -> Result<T, RailError> {
    if let Some((code, message)) = provider_error(provider, body) {
        return Err(RailError::Refused { code, message });
    }
    if status.is_success() {
        return serde_json::from_slice(body).map_err(|e| {
            RailError::Unavailable(format!("unexpected answer: {e}: {}", snippet(body)))
        });
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(RailError::Unavailable(format!(
            "HTTP {}: {}",
            status.as_u16(),
            snippet(body)
        )));
    }
    if status.is_client_error() {
        return Err(RailError::Refused {
            code: status.as_u16().to_string(),
            message: snippet(body),
        });
    }
    Err(RailError::Unavailable(format!(
        "unexpected HTTP {}: {}",
        status.as_u16(),
        snippet(body)
    )))
}

/// The start of a body, for messages: enough to diagnose, never a whole page.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(200).collect()
}

/// A client honouring the configured timeout for the whole exchange.
pub(crate) fn client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Truncates to at most `max` characters (not bytes), as the providers count.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// "1500.00" / "1500" / "1500.5" → minor units with two decimals; junk → None.
pub(crate) fn decimal_to_minor(s: &str, exponent: u32) -> Option<i64> {
    let s = s.trim();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    let scale = 10i64.checked_pow(exponent)?;
    let whole: i64 = whole.parse().ok()?;
    let frac_digits = frac.trim_end_matches('0');
    if frac_digits.len() > exponent as usize {
        return None;
    }
    let mut frac_value: i64 = 0;
    if !frac_digits.is_empty() {
        frac_value = frac_digits.parse().ok()?;
        frac_value =
            frac_value.checked_mul(10i64.checked_pow(exponent - frac_digits.len() as u32)?)?;
    }
    whole.checked_mul(scale)?.checked_add(frac_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_minor_units() {
        assert_eq!(decimal_to_minor("1500.00", 2), Some(150_000));
        assert_eq!(decimal_to_minor("1500", 2), Some(150_000));
        assert_eq!(decimal_to_minor("100.5", 2), Some(10_050));
        assert_eq!(decimal_to_minor("100.505", 2), None);
        assert_eq!(decimal_to_minor("100", 0), Some(100));
        assert_eq!(decimal_to_minor("abc", 2), None);
        assert_eq!(decimal_to_minor("-5", 2), None);
        assert_eq!(decimal_to_minor("5.", 2), None);
        assert_eq!(decimal_to_minor("", 2), None);
    }

    #[test]
    fn provider_codes_win_over_status() {
        let body = br#"{"requestId":"1","errorCode":"500.001.1001","errorMessage":"Unable to lock subscriber"}"#;
        let err = classify::<Value>(Provider::Daraja, StatusCode::INTERNAL_SERVER_ERROR, body);
        assert!(matches!(err, Err(RailError::Refused { code, .. }) if code == "500.001.1001"));
        let err = classify::<Value>(Provider::Daraja, StatusCode::SERVICE_UNAVAILABLE, b"down");
        assert!(matches!(err, Err(RailError::Unavailable(_))));
        let err = classify::<Value>(Provider::Momo, StatusCode::NOT_FOUND, b"");
        assert!(matches!(err, Err(RailError::Refused { code, .. }) if code == "404"));
        let err = classify::<Vec<u8>>(Provider::Momo, StatusCode::OK, b"<html>");
        assert!(
            matches!(err, Err(RailError::Unavailable(m)) if m.starts_with("unexpected answer"))
        );
    }
}
