//! The CloudEvents 1.0 envelope, JSON format.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A typed event payload and its versioned CloudEvents type name.
pub trait EventPayload: Serialize + DeserializeOwned {
    /// For example `users.kyc.approved.v1`.
    const TYPE: &'static str;
    /// What the event is about, usually the id of the aggregate.
    fn subject(&self) -> Option<String>;
}

/// One event as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub specversion: String,
    pub id: Uuid,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub datacontenttype: String,
    pub data: serde_json::Value,
    /// The CloudEvents distributed-tracing extension: the W3C trace context
    /// of the request (or handler) that caused the event, so its consumers
    /// continue the same trace. Absent when traces are not exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl Event {
    /// A new event; made within a traced span, it carries that span's trace context.
    pub fn new<P: EventPayload>(source: &str, time: DateTime<Utc>, payload: &P) -> Self {
        let trace = miliki_platform::telemetry::current();
        Self {
            specversion: "1.0".into(),
            id: miliki_platform::id::new_id(),
            source: source.to_owned(),
            event_type: P::TYPE.to_owned(),
            time,
            subject: payload.subject(),
            datacontenttype: "application/json".into(),
            data: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
            traceparent: trace.as_ref().map(|t| t.traceparent.clone()),
            tracestate: trace.and_then(|t| t.tracestate),
        }
    }

    /// A span for handling this event that continues the trace it carries.
    pub fn handler_span(&self, consumer: &str) -> tracing::Span {
        let span = tracing::info_span!(
            "event",
            consumer,
            event_type = %self.event_type,
            event_id = %self.id,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        if miliki_platform::telemetry::tracing_enabled() {
            span.record("otel.kind", "consumer");
            span.record("otel.name", format!("{consumer} {}", self.event_type));
            miliki_platform::telemetry::continue_from(
                &span,
                self.traceparent.as_deref(),
                self.tracestate.as_deref(),
            );
        }
        span
    }

    /// The payload, if this event is of type `P`.
    pub fn payload<P: EventPayload>(&self) -> Option<Result<P, serde_json::Error>> {
        (self.event_type == P::TYPE).then(|| serde_json::from_value(self.data.clone()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let event: Event = serde_json::from_slice(bytes)?;
        if event.specversion != "1.0" {
            return Err(serde::de::Error::custom(
                "unsupported CloudEvents specversion",
            ));
        }
        Ok(event)
    }
}

/// AMQP topic matching: words split on `.`, `*` matches one word, `#` any number.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("users.#", "users.kyc.approved.v1"));
        assert!(topic_matches("users.kyc.*.v1", "users.kyc.approved.v1"));
        assert!(topic_matches("#", "a"));
        assert!(topic_matches(
            "users.kyc.approved.v1",
            "users.kyc.approved.v1"
        ));
        assert!(!topic_matches("users.kyc.*", "users.kyc.approved.v1"));
        assert!(!topic_matches("vehicles.#", "users.kyc.approved.v1"));
    }

    #[test]
    fn envelope_round_trips_with_cloudevents_names() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Ping {
            n: u32,
        }
        impl EventPayload for Ping {
            const TYPE: &'static str = "test.ping.v1";
            fn subject(&self) -> Option<String> {
                Some(self.n.to_string())
            }
        }
        let e = Event::new("/test", Utc::now(), &Ping { n: 7 });
        let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(json["type"], "test.ping.v1");
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["subject"], "7");
        let back = Event::from_json(e.to_json().as_bytes()).unwrap();
        assert_eq!(back.payload::<Ping>().unwrap().unwrap(), Ping { n: 7 });
    }
}
