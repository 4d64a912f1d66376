-- The credential version last published as users.user.credentials_changed.v1,
-- so accounts that predate the event (or whose event was not yet written) are
-- announced at start.
ALTER TABLE users ADD COLUMN announced_version BIGINT NOT NULL DEFAULT -1;
