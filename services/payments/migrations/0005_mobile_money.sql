-- How a contract's installments are collected: the rail, the payer's phone
-- (encrypted; its blind index finds requests in flight to one phone) and the
-- local time of day collection starts on a due date.
CREATE TABLE collection_settings (
    contract_id TEXT PRIMARY KEY,
    rail TEXT NOT NULL CHECK (rail IN ('mpesa', 'mtn_momo')),
    phone BYTEA NOT NULL,
    phone_index TEXT NOT NULL,
    collect_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Every money prompt sent to a rail (an STK push, a request to pay), asked
-- for by a person or by the collection scheduler. Its id becomes the id of
-- the ledger payment when the money is confirmed, so a request is credited
-- at most once by construction. `status`: queued (claimed, being sent),
-- sent (the rail took it; a result is awaited), unknown (it may have reached
-- the rail but no answer came), succeeded, failed.
CREATE TABLE money_requests (
    id TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    rail TEXT NOT NULL,
    phone BYTEA NOT NULL,
    phone_index TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('request', 'schedule')),
    requested_by TEXT,
    collection_day TEXT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'unknown', 'succeeded', 'failed')),
    provider_ref TEXT,
    merchant_ref TEXT,
    receipt TEXT,
    result_code TEXT,
    result_text TEXT,
    check_at BIGINT,
    checks BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX money_requests_provider_ref ON money_requests (rail, provider_ref);
CREATE UNIQUE INDEX money_requests_receipt ON money_requests (rail, receipt);
-- Never two prompts in flight for one contract, or for one phone.
CREATE UNIQUE INDEX money_requests_contract_in_flight ON money_requests (contract_id)
    WHERE status IN ('queued', 'sent', 'unknown');
CREATE UNIQUE INDEX money_requests_phone_in_flight ON money_requests (phone_index)
    WHERE status IN ('queued', 'sent', 'unknown');
CREATE INDEX money_requests_contract ON money_requests (contract_id, id);
CREATE INDEX money_requests_check ON money_requests (check_at) WHERE status IN ('queued', 'sent', 'unknown');

-- One collection day of one contract: opened at its collection time when
-- something is due, retried by the failure's rule, closed when paid or when
-- the day's prompts are spent. The primary key is the claim: replicas and
-- restarts open each day once.
CREATE TABLE collection_days (
    contract_id TEXT NOT NULL,
    day TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'done')),
    prompts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT,
    outcome TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (contract_id, day)
);
CREATE INDEX collection_days_next ON collection_days (next_at) WHERE status = 'open';

-- Paybill (C2B) payments as confirmed by the rail. One row per TransID: a
-- confirmation delivered twice is recorded once. `status`: confirming (the
-- transaction status query is out), credited, suspense (no contract has
-- that account number; an admin assigns it), assigned, rejected (the rail
-- does not know the transaction, or its facts differ: credited nothing).
CREATE TABLE paybill_payments (
    id TEXT PRIMARY KEY,
    trans_id TEXT NOT NULL UNIQUE,
    bill_ref TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    msisdn BYTEA NOT NULL,
    contract_id TEXT,
    status TEXT NOT NULL CHECK (status IN ('confirming', 'credited', 'suspense', 'assigned', 'rejected')),
    note TEXT,
    received_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    assigned_by TEXT
);
CREATE INDEX paybill_payments_status ON paybill_payments (status, id);

-- Callbacks that credited nothing: for an unknown request, with facts that
-- differ from the request, or that the rail did not confirm. Kept for review.
CREATE TABLE callback_reviews (
    id TEXT PRIMARY KEY,
    rail TEXT NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT,
    reason TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX callback_reviews_received ON callback_reviews (received_at);
