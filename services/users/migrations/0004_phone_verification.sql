-- When the account's current phone was proven to be its owner's (NULL: not yet).
ALTER TABLE users ADD COLUMN phone_verified_at BIGINT;
-- From when the grace period for an unverified phone runs: registration, or the
-- last phone change.
ALTER TABLE users ADD COLUMN phone_unverified_since BIGINT;
-- Accounts from before codes existed were vouched for by whoever created them.
UPDATE users SET phone_verified_at = created_at;

-- The one live code per account. Only its keyed hash is kept.
CREATE TABLE phone_codes (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    code_hash TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Wrong codes tried against this code; at the limit it is dead.
    attempts BIGINT NOT NULL,
    sent_at BIGINT NOT NULL,
    -- Sends in the current hour's window, for the hourly cap.
    window_start BIGINT NOT NULL,
    sends_in_window BIGINT NOT NULL
);
