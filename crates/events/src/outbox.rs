//! The producer side: events written with the state change they describe.

use std::sync::Arc;

use miliki_platform::clock::{to_micros, SharedClock};
use miliki_platform::db::{backend_of, values_list, Tx};
use tokio::sync::Notify;

use crate::envelope::{Event, EventPayload};

/// Writes a service's events into its outbox.
#[derive(Clone)]
pub struct EventWriter {
    source: String,
    clock: SharedClock,
    notify: Arc<Notify>,
}

impl EventWriter {
    /// `source` is the CloudEvents source, e.g. `/miliki/users`.
    pub fn new(source: impl Into<String>, clock: SharedClock) -> Self {
        Self {
            source: source.into(),
            clock,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Adds `payload` to the outbox within `tx`; it is published only if `tx` commits.
    pub async fn write<P: EventPayload>(
        &self,
        tx: &mut Tx,
        payload: &P,
    ) -> Result<Event, sqlx::Error> {
        let event = Event::new(&self.source, self.clock.now(), payload);
        sqlx::query(
            "INSERT INTO outbox (id, event_type, envelope, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(event.id.to_string())
        .bind(&event.event_type)
        .bind(event.to_json())
        .bind(to_micros(event.time))
        .execute(&mut **tx)
        .await?;
        Ok(event)
    }

    /// Adds every payload to the outbox within `tx` with multi-row inserts:
    /// what a bulk change (an import) writes, one statement per few hundred
    /// events rather than one per event.
    pub async fn write_all<P: EventPayload>(
        &self,
        tx: &mut Tx,
        payloads: &[P],
    ) -> Result<Vec<Event>, sqlx::Error> {
        let now = self.clock.now();
        let events: Vec<Event> = payloads
            .iter()
            .map(|p| Event::new(&self.source, now, p))
            .collect();
        let backend = backend_of(tx);
        // Four parameters an event: 500 rows stay far below either engine's limit.
        for chunk in events.chunks(500) {
            let sql = format!(
                "INSERT INTO outbox (id, event_type, envelope, created_at) VALUES {}",
                values_list(backend, chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for event in chunk {
                query = query
                    .bind(event.id.to_string())
                    .bind(event.event_type.clone())
                    .bind(event.to_json())
                    .bind(to_micros(event.time));
            }
            query.execute(&mut **tx).await?;
        }
        Ok(events)
    }

    /// Commits `tx` and nudges the relay so the events leave without waiting for its poll.
    pub async fn commit(&self, tx: Tx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.notify.notify_one();
        Ok(())
    }

    pub(crate) fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}
