-- Contracts written from an approved upgrade. When such a contract's deposit
-- can be met, the old contract is settled by trading its vehicle in at the
-- value the upgrade was approved at; what is left (the equity) pays the new
-- contract's deposit, and the new contract activates in the same commit.
CREATE TABLE contract_upgrades (
    contract_id TEXT PRIMARY KEY,
    from_contract_id TEXT NOT NULL,
    upgrade_request_id TEXT NOT NULL UNIQUE,
    trade_in_value_minor BIGINT NOT NULL CHECK (trade_in_value_minor >= 0),
    -- Set once traded in: what the trade-in left for the new contract.
    equity_minor BIGINT,
    settled_at BIGINT
);
CREATE INDEX contract_upgrades_from ON contract_upgrades (from_contract_id);
