-- Trackers. A device token (for the HTTP and WebSocket protocols) is kept
-- only as its SHA-256. An IMEI is unique among active devices; a
-- decommissioned tracker can be registered again.
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    imei TEXT NOT NULL,
    protocol TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    sim_phone TEXT,
    model TEXT,
    token_hash TEXT,
    status TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    decommissioned_at BIGINT,
    decommission_reason TEXT,
    last_seen_at BIGINT
);
CREATE UNIQUE INDEX devices_active_imei ON devices (imei) WHERE status = 'active';
CREATE UNIQUE INDEX devices_token ON devices (token_hash);
CREATE INDEX devices_vehicle ON devices (vehicle_id);

-- Positions, one row per device and fix time: a resent record is the same row.
-- `facts` holds the rest of the position (alarms, engine, raw IO) as JSON.
CREATE TABLE positions (
    device_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    vehicle_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    speed_kmh DOUBLE PRECISION NOT NULL,
    heading DOUBLE PRECISION,
    altitude DOUBLE PRECISION,
    satellites BIGINT,
    ignition BIGINT,
    odometer_m BIGINT,
    ext_voltage_mv BIGINT,
    battery_mv BIGINT,
    facts TEXT NOT NULL,
    PRIMARY KEY (device_id, at)
);
CREATE INDEX positions_vehicle_at ON positions (vehicle_id, at);

-- The newest position of each vehicle; never moves back in time.
CREATE TABLE vehicle_latest (
    vehicle_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    position TEXT NOT NULL,
    -- Since when the vehicle has been stopped with its engine off, if it is.
    parked_since BIGINT,
    received_at BIGINT NOT NULL
);

-- What telematics has learned from other services' events.
CREATE TABLE vehicles (
    vehicle_id TEXT PRIMARY KEY,
    vehicle_type TEXT,
    customer_id TEXT,
    contract_id TEXT,
    holder_as_of BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX vehicles_customer ON vehicles (customer_id);
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    agent_id TEXT
);
CREATE INDEX customers_agent ON customers (agent_id);

CREATE TABLE risk_events (
    id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    at BIGINT NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    details TEXT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at BIGINT,
    acknowledge_note TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX risk_events_vehicle ON risk_events (vehicle_id, id);

-- Detection's memory per vehicle (hysteresis and cooldowns), as JSON.
CREATE TABLE risk_state (
    vehicle_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
);

CREATE TABLE geofences (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    shape TEXT NOT NULL,
    -- NULL: applies to every vehicle.
    vehicle_id TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);

CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    contract_id TEXT,
    requested_by TEXT,
    requested_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_sent_at BIGINT,
    acknowledged_at BIGINT,
    response TEXT,
    wait_note TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX commands_vehicle ON commands (vehicle_id, id);
CREATE INDEX commands_status ON commands (status, not_before);

-- Every step of every command.
CREATE TABLE command_steps (
    id TEXT PRIMARY KEY,
    command_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor_id TEXT,
    note TEXT NOT NULL
);
CREATE INDEX command_steps_command ON command_steps (command_id, id);

-- The immobilization policy's view of each contract.
CREATE TABLE contract_policy (
    contract_id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    days_past_due BIGINT NOT NULL DEFAULT 0,
    paused BIGINT NOT NULL DEFAULT 0,
    override_by TEXT,
    override_reason TEXT,
    as_of BIGINT NOT NULL DEFAULT 0
);
