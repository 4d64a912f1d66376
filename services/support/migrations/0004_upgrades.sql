-- The latest credit band of each customer (credit.score.changed.v1).
CREATE TABLE credit_bands (
    customer_id TEXT PRIMARY KEY,
    band TEXT NOT NULL,
    score BIGINT NOT NULL,
    as_of BIGINT NOT NULL
);

-- Requests to trade a vehicle under contract in for a bigger one. The
-- assessment (JSON) is the latest: every check with its reason, the
-- trade-in value and the equity.
CREATE TABLE upgrade_requests (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    desired_vehicle_id TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('ineligible', 'pending_review', 'approved', 'declined', 'cancelled', 'completed', 'expired')),
    assessment TEXT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    new_contract_id TEXT,
    -- An approval lapses (expired) if no contract has traded in by then.
    valid_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- One open request per contract.
CREATE UNIQUE INDEX upgrade_requests_open ON upgrade_requests (contract_id)
    WHERE status IN ('pending_review', 'approved');
CREATE INDEX upgrade_requests_customer ON upgrade_requests (customer_id, id);
CREATE INDEX upgrade_requests_approved ON upgrade_requests (status, valid_until);

-- Every state change, with who made it (none: the platform) and why.
CREATE TABLE upgrade_transitions (
    upgrade_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor_id TEXT,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (upgrade_id, seq)
);
