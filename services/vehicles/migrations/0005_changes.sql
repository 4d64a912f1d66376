-- The change log: one row per committed write to a vehicle, in the same
-- transaction as the write. `position` is assigned after commit by a single
-- relay at a time (serialised on `vehicle_change_counter`), in the order the
-- relay sees the rows committed, so a reader that has seen position N has
-- seen every change that will ever get a position up to N: a transaction
-- that commits late with an older id gets a later position, never a skipped one.
-- The availability stream (status changes, `history_id` set) and every
-- replica's in-memory search index follow it by position.
CREATE TABLE vehicle_changes (
    id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL,
    history_id TEXT,
    position BIGINT UNIQUE
);
CREATE INDEX vehicle_changes_pending ON vehicle_changes (id) WHERE position IS NULL;

CREATE TABLE vehicle_change_counter (
    one BIGINT PRIMARY KEY,
    last BIGINT NOT NULL
);
INSERT INTO vehicle_change_counter (one, last) VALUES (1, 0);

-- Status changes made before the log existed keep their order.
INSERT INTO vehicle_changes (id, vehicle_id, history_id, position)
    SELECT id, vehicle_id, id, ROW_NUMBER() OVER (ORDER BY id) FROM vehicle_status_history;
UPDATE vehicle_change_counter SET last = (SELECT COUNT(*) FROM vehicle_changes) WHERE one = 1;
