//! The consumer that keeps a service's [`Credentials`] projection: the
//! runtime subscribes one for every service, under `<service>.credentials`,
//! so no service writes this plumbing itself.

use std::sync::Arc;

use async_trait::async_trait;
use miliki_platform::clock::SharedClock;
use miliki_platform::credentials::{Credential, Credentials};
use miliki_platform::db::Db;

use crate::bus::EventHandler;
use crate::catalogue::users::CredentialsChanged;
use crate::envelope::{Event, EventPayload};
use crate::inbox;

/// The event type the projection follows.
pub const PATTERN: &str = CredentialsChanged::TYPE;

/// The consumer name of `service`'s projection (its own queue and inbox namespace).
pub fn consumer_name(service: &str) -> String {
    format!("{service}.credentials")
}

pub struct Consumer {
    pub name: String,
    pub db: Db,
    pub clock: SharedClock,
    pub credentials: Arc<Credentials>,
}

#[async_trait]
impl EventHandler for Consumer {
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let Some(payload) = event.payload::<CredentialsChanged>() else {
            return Ok(());
        };
        let p = payload?;
        let role = p
            .role
            .parse()
            .map_err(|_| anyhow::anyhow!("unknown role {:?}", p.role))?;
        let mut tx = self.db.begin().await?;
        if inbox::claim(&mut tx, &self.name, event, self.clock.now()).await? {
            Credentials::record(
                &mut tx,
                p.user_id,
                Credential {
                    role,
                    version: p.version,
                    active: p.active,
                },
            )
            .await?;
        }
        tx.commit().await?;
        self.credentials.forget(p.user_id);
        Ok(())
    }
}
