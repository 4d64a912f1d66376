-- Financing products. `terms` is the JSON of the product's terms; a contract
-- copies it, so editing or retiring a product never changes a live contract.
CREATE TABLE products (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    terms TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE INDEX products_status ON products (status, id);

-- What this service has learned about vehicles from the vehicles service's events.
CREATE TABLE vehicles_seen (
    vehicle_id TEXT PRIMARY KEY,
    vehicle_type TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    as_of BIGINT NOT NULL
);

-- Who onboarded each customer (users.user.registered.v1): an agent's book.
CREATE TABLE customers_seen (
    user_id TEXT PRIMARY KEY,
    onboarded_by TEXT,
    as_of BIGINT NOT NULL
);
CREATE INDEX customers_seen_agent ON customers_seen (onboarded_by);

-- Contracts. Amounts are integer minor units in `currency`; dates are the
-- operator's calendar dates as YYYY-MM-DD.
CREATE TABLE contracts (
    id TEXT PRIMARY KEY,
    account_number TEXT NOT NULL UNIQUE,
    application_id TEXT UNIQUE,
    customer_id TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    reservation_id TEXT,
    product_id TEXT NOT NULL,
    product TEXT NOT NULL,
    currency TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    deposit_minor BIGINT NOT NULL,
    principal_minor BIGINT NOT NULL,
    processing_fee_minor BIGINT NOT NULL,
    total_interest_minor BIGINT NOT NULL,
    total_payable_minor BIGINT NOT NULL,
    installment_minor BIGINT NOT NULL,
    term_periods BIGINT NOT NULL,
    status TEXT NOT NULL,
    signed_date TEXT NOT NULL,
    start_date TEXT,
    credit_minor BIGINT NOT NULL DEFAULT 0,
    days_past_due BIGINT NOT NULL DEFAULT 0,
    bucket TEXT NOT NULL DEFAULT 'current',
    overdue_minor BIGINT NOT NULL DEFAULT 0,
    aged_through TEXT NOT NULL,
    paused_on TEXT,
    pause_days BIGINT,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX contracts_customer ON contracts (customer_id, id);
CREATE INDEX contracts_vehicle ON contracts (vehicle_id);
CREATE INDEX contracts_status ON contracts (status, id);
CREATE INDEX contracts_aging ON contracts (aged_through, id);

-- Every status change, with who made it and why.
CREATE TABLE contract_transitions (
    id TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor_id TEXT,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX contract_transitions_contract ON contract_transitions (contract_id, id);

-- The schedule and what has been paid on it. Installment 0 is the deposit
-- (as principal) and the processing fee (as fees).
CREATE TABLE installments (
    contract_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    due_date TEXT NOT NULL,
    penalties_due BIGINT NOT NULL,
    fees_due BIGINT NOT NULL,
    interest_due BIGINT NOT NULL,
    principal_due BIGINT NOT NULL,
    penalties_paid BIGINT NOT NULL,
    fees_paid BIGINT NOT NULL,
    interest_paid BIGINT NOT NULL,
    principal_paid BIGINT NOT NULL,
    penalties_waived BIGINT NOT NULL,
    fees_waived BIGINT NOT NULL,
    interest_waived BIGINT NOT NULL,
    principal_waived BIGINT NOT NULL,
    late_fee_charged BIGINT NOT NULL,
    PRIMARY KEY (contract_id, number)
);
CREATE INDEX installments_due ON installments (due_date);

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    method TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('received', 'reversed')),
    days_late BIGINT NOT NULL,
    received_by TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    local_date TEXT NOT NULL,
    reversed_by TEXT,
    reversed_at BIGINT,
    reversal_reason TEXT
);
CREATE INDEX payments_contract ON payments (contract_id, id);
CREATE INDEX payments_day ON payments (local_date);

-- The journal: append-only. A correction is a new transaction.
CREATE TABLE journal_transactions (
    id TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL,
    payment_id TEXT,
    kind TEXT NOT NULL,
    memo TEXT NOT NULL,
    currency TEXT NOT NULL,
    posted_at BIGINT NOT NULL,
    local_date TEXT NOT NULL
);
CREATE INDEX journal_transactions_contract ON journal_transactions (contract_id, id);

CREATE TABLE journal_entries (
    transaction_id TEXT NOT NULL,
    line BIGINT NOT NULL,
    account TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    installment BIGINT,
    amount_minor BIGINT NOT NULL,
    PRIMARY KEY (transaction_id, line)
);
CREATE INDEX journal_entries_contract ON journal_entries (contract_id, account);

-- The handover after payoff.
CREATE TABLE ownership_steps (
    contract_id TEXT NOT NULL,
    step TEXT NOT NULL,
    reference TEXT,
    done_by TEXT,
    done_at BIGINT NOT NULL,
    PRIMARY KEY (contract_id, step)
);
