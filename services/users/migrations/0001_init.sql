-- Accounts. Phone and email are stored encrypted (AES-256-GCM, key id inside
-- the ciphertext) and found through keyed HMAC blind indexes.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_search TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('customer', 'agent', 'admin')),
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    phone_enc BYTEA NOT NULL,
    phone_index TEXT NOT NULL UNIQUE,
    email_enc BYTEA,
    email_index TEXT UNIQUE,
    password_hash TEXT NOT NULL,
    onboarded_by TEXT REFERENCES users (id),
    auth_version BIGINT NOT NULL DEFAULT 0,
    kyc_status TEXT NOT NULL DEFAULT 'not_submitted',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_onboarded_by ON users (onboarded_by, id);
CREATE INDEX users_name_search ON users (name_search);

-- Every suspension and reinstatement, with who and why.
CREATE TABLE user_status_history (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    status TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);

-- Opaque refresh tokens, stored as SHA-256 hashes. Each login starts a
-- family; every refresh uses one token and issues the next in its family.
CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    token_hash TEXT NOT NULL UNIQUE,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE kyc_submissions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    submitted_by TEXT NOT NULL REFERENCES users (id),
    document_type TEXT NOT NULL,
    document_number_enc BYTEA NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    reviewed_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX kyc_submissions_user ON kyc_submissions (user_id, id);
CREATE INDEX kyc_submissions_status ON kyc_submissions (status, id);
-- At most one submission awaiting review per customer, whoever races.
CREATE UNIQUE INDEX kyc_one_pending ON kyc_submissions (user_id) WHERE status = 'pending';

-- Document images, encrypted.
CREATE TABLE kyc_documents (
    submission_id TEXT NOT NULL REFERENCES kyc_submissions (id),
    side TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    data_enc BYTEA NOT NULL,
    PRIMARY KEY (submission_id, side)
);

-- Every state a submission has been in.
CREATE TABLE kyc_history (
    id TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES kyc_submissions (id),
    status TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX kyc_history_submission ON kyc_history (submission_id, id);
