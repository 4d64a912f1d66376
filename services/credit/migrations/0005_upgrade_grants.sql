-- Upgrades the support service approved (support.upgrade.decided.v1): the
-- customer may carry the equity of `contract_id` into an application for
-- `vehicle_id`. `application_id` is the application that took it up.
CREATE TABLE upgrade_grants (
    upgrade_request_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    trade_in_value_minor BIGINT NOT NULL,
    equity_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    application_id TEXT,
    granted_at BIGINT NOT NULL,
    -- After this an application can no longer take the upgrade up.
    valid_until BIGINT
);
CREATE INDEX upgrade_grants_application ON upgrade_grants (application_id);
