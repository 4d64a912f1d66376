-- Whose phone the users service says is awaiting its code (verified = 0):
-- no money prompt goes to them until it is verified.
CREATE TABLE phone_standing (
    customer_id TEXT PRIMARY KEY,
    verified BIGINT NOT NULL,
    -- The time of the event that set it; older events do not overwrite it.
    as_of BIGINT NOT NULL
);
