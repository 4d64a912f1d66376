-- Installment-due reminders claimed by the daily job: one row per
-- (contract, installment, days_before), written in the transaction that
-- writes the event to the outbox, so a restart or a second replica never
-- publishes a reminder twice. `outcome`: sent (the event was written) or
-- paid (nothing was owed by then, so nothing was sent).
CREATE TABLE installment_reminders (
    contract_id TEXT NOT NULL,
    installment BIGINT NOT NULL,
    days_before BIGINT NOT NULL,
    due_date TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'paid')),
    amount_due_minor BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (contract_id, installment, days_before)
);
