-- What this service has learned from other services' events.

-- vehicles.vehicle.listed.v1: a vehicle's type and price, for offers.
CREATE TABLE vehicles_seen (
    vehicle_id TEXT PRIMARY KEY,
    vehicle_type TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    as_of BIGINT NOT NULL
);

-- vehicles.reservation.*: who holds which vehicle until when. `as_of` is the
-- time of the event that set `status`; older events never overwrite newer.
CREATE TABLE reservations_seen (
    reservation_id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    as_of BIGINT NOT NULL
);
CREATE INDEX reservations_seen_customer ON reservations_seen (customer_id, vehicle_id);

-- payments.contract.*: the customer's contracts on the platform.
CREATE TABLE contracts_seen (
    contract_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    status TEXT NOT NULL,
    activated_at BIGINT,
    days_past_due BIGINT NOT NULL DEFAULT 0,
    worst_days_past_due BIGINT NOT NULL DEFAULT 0,
    bucket TEXT NOT NULL DEFAULT 'current',
    arrears_as_of BIGINT NOT NULL DEFAULT 0,
    status_as_of BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX contracts_seen_customer ON contracts_seen (customer_id);
CREATE INDEX contracts_seen_vehicle ON contracts_seen (vehicle_id);

-- payments.payment.received.v1 / reversed.v1: how the customer has paid.
CREATE TABLE payments_seen (
    payment_id TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    days_late BIGINT NOT NULL,
    reversed BIGINT NOT NULL DEFAULT 0,
    at BIGINT NOT NULL
);
CREATE INDEX payments_seen_customer ON payments_seen (customer_id);

-- telematics.risk.detected.v1 on a vehicle a customer holds under contract.
CREATE TABLE risk_seen (
    event_id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX risk_seen_customer ON risk_seen (customer_id);

-- Applications. `features`, `score` and `offer` are JSON documents written at
-- decision time; the money columns are integer minor units in `currency`.
CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    deposit_minor BIGINT NOT NULL,
    term_periods BIGINT NOT NULL,
    occupation TEXT NOT NULL,
    income_declared_minor BIGINT NOT NULL,
    income_frequency TEXT NOT NULL,
    guarantor TEXT,
    statement TEXT,
    status TEXT NOT NULL,
    features TEXT NOT NULL,
    score TEXT,
    offer TEXT,
    accepted TEXT,
    open_reservation TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX applications_customer ON applications (customer_id, id);
CREATE INDEX applications_status ON applications (status, id);
CREATE INDEX applications_reservation ON applications (reservation_id);

-- Every state change of an application, with who made it and why.
CREATE TABLE application_transitions (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor_id TEXT,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX application_transitions_app ON application_transitions (application_id, at);

-- Living scores: every change of a customer's score, with its cause.
CREATE TABLE score_history (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    score BIGINT NOT NULL,
    band TEXT NOT NULL,
    model_version TEXT NOT NULL,
    detail TEXT NOT NULL,
    cause TEXT NOT NULL,
    event_id TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX score_history_customer ON score_history (customer_id, at);
