-- Support tickets. Times are microseconds since the epoch (UTC); ids are UUID v7 text.
-- `customer_id` is NULL only for a ticket about a vehicle whose holder is not known.
CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    customer_id TEXT,
    created_by TEXT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    search_text TEXT NOT NULL,
    category TEXT NOT NULL,
    priority TEXT NOT NULL,
    status TEXT NOT NULL,
    contract_id TEXT,
    vehicle_id TEXT,
    assignee_id TEXT,
    -- The event that opened the ticket by itself (a crash), so it opens once.
    source_event_id TEXT UNIQUE,
    first_response_due BIGINT NOT NULL,
    resolution_due BIGINT NOT NULL,
    first_response_at BIGINT,
    resolved_at BIGINT,
    closed_at BIGINT,
    response_breached_at BIGINT,
    resolution_breached_at BIGINT,
    rating BIGINT,
    rating_comment TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX tickets_customer ON tickets (customer_id, id);
CREATE INDEX tickets_status ON tickets (status, id);
CREATE INDEX tickets_response_due ON tickets (first_response_due) WHERE first_response_at IS NULL AND response_breached_at IS NULL;
CREATE INDEX tickets_resolution_due ON tickets (resolution_due) WHERE resolved_at IS NULL AND resolution_breached_at IS NULL;

CREATE TABLE ticket_comments (
    id TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL REFERENCES tickets (id),
    author_id TEXT,
    author_role TEXT NOT NULL,
    body TEXT NOT NULL,
    -- 1 for a staff-only note a customer never sees.
    internal BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_id, id);

CREATE TABLE ticket_history (
    id TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL REFERENCES tickets (id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor_id TEXT,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX ticket_history_ticket ON ticket_history (ticket_id, id);

CREATE TABLE ticket_attachments (
    id TEXT PRIMARY KEY,
    ticket_id TEXT NOT NULL REFERENCES tickets (id),
    uploaded_by TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    data BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ticket_attachments_ticket ON ticket_attachments (ticket_id, id);

-- Who holds which vehicle, from payments' contract events: a crash names a vehicle, the ticket a customer.
CREATE TABLE vehicle_holders (
    vehicle_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    contract_id TEXT NOT NULL
);

-- In-app notifications. One row per (event, template, channel): a redelivered event adds nothing.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    template TEXT NOT NULL,
    channel TEXT NOT NULL,
    category TEXT NOT NULL,
    priority TEXT NOT NULL,
    language TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    -- in_app: delivered; others: queued, sending, sent, failed, cancelled.
    status TEXT NOT NULL,
    -- Where it goes (a phone number, an address, a device token); NULL in-app.
    address TEXT,
    attempts BIGINT NOT NULL,
    provider_ref TEXT,
    -- Quiet hours, backoff, rate limits and reminders hold a message until then.
    send_after BIGINT NOT NULL,
    -- A scheduled reminder made moot by a later event is cancelled by this key.
    cancel_key TEXT,
    read_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX notifications_key ON notifications (event_id, template, channel);
CREATE INDEX notifications_customer ON notifications (customer_id, id);
CREATE INDEX notifications_due ON notifications (status, send_after);
CREATE INDEX notifications_cancel ON notifications (cancel_key) WHERE cancel_key IS NOT NULL;

-- Each step of a notification's delivery.
CREATE TABLE notification_deliveries (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL REFERENCES notifications (id),
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX notification_deliveries_notification ON notification_deliveries (notification_id, id);

CREATE TABLE notification_preferences (
    customer_id TEXT PRIMARY KEY,
    language TEXT NOT NULL,
    -- JSON: {"<category>": ["in_app", ...]}
    channels TEXT NOT NULL,
    -- Minutes after local midnight in `timezone`.
    quiet_start BIGINT,
    quiet_end BIGINT,
    timezone TEXT NOT NULL,
    sms_number TEXT,
    email TEXT,
    push_token TEXT,
    updated_at BIGINT NOT NULL
);

-- Email delivered to the local sink (no MILIKI_SMTP_URL), readable by admins through the API.
CREATE TABLE email_sink (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL,
    to_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    at BIGINT NOT NULL
);
