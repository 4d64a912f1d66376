-- Events waiting for (or done with) publication, in the same database as the
-- state they describe. Ids are UUIDv7, so ordering by id is ordering by time.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

-- Events this service has handled, recorded with their effect.
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    handled_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- Events this service gave up on after its retries (in-process bus; RabbitMQ
-- keeps its own dead-letter queue).
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    envelope TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
