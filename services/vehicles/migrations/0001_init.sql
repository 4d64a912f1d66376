-- The inventory. Money is integer minor units with its currency; positions are
-- degrees. `search_text`, `make_key` and `model_key` are lower-cased copies so
-- matching is case-blind on both engines (SQLite's LIKE ignores case, PostgreSQL's does not).
CREATE TABLE vehicles (
    id TEXT PRIMARY KEY,
    vehicle_type TEXT NOT NULL CHECK (vehicle_type IN ('motorcycle', 'car', 'van', 'truck')),
    make TEXT NOT NULL,
    make_key TEXT NOT NULL,
    model TEXT NOT NULL,
    model_key TEXT NOT NULL,
    year BIGINT NOT NULL,
    colour TEXT NOT NULL,
    vin TEXT NOT NULL,
    registration TEXT NOT NULL,
    registration_key TEXT NOT NULL,
    mileage_km BIGINT NOT NULL CHECK (mileage_km >= 0),
    condition TEXT NOT NULL,
    fuel TEXT NOT NULL,
    branch TEXT NOT NULL,
    latitude DOUBLE PRECISION NOT NULL,
    longitude DOUBLE PRECISION NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor > 0),
    currency TEXT NOT NULL,
    cost_price_minor BIGINT,
    notes TEXT,
    description TEXT NOT NULL,
    engine_cc BIGINT,
    seats BIGINT,
    transmission TEXT,
    cargo_volume_litres BIGINT,
    payload_kg BIGINT,
    axles BIGINT,
    status TEXT NOT NULL,
    held_by TEXT,
    search_text TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX vehicles_vin ON vehicles (vin);
CREATE UNIQUE INDEX vehicles_registration ON vehicles (registration_key);
-- Search: the status every customer query filters on leads, then the sort key.
CREATE INDEX vehicles_status_price ON vehicles (status, price_minor, id);
CREATE INDEX vehicles_status_year ON vehicles (status, year, id);
CREATE INDEX vehicles_status_created ON vehicles (status, created_at, id);
-- The typical storefront search (a type, a price range, maybe year and branch)
-- is answered from this index alone: it holds every column such a search
-- filters, sorts or counts facets on, so only the page's rows touch the table.
CREATE INDEX vehicles_search ON vehicles (vehicle_type, status, price_minor, year, branch, make, created_at, id);
CREATE INDEX vehicles_make_status ON vehicles (make_key, model_key, status, price_minor);
CREATE INDEX vehicles_branch_status ON vehicles (branch, status, price_minor);
-- Near-me: the bounding-box prefilter reads everything it needs from here.
CREATE INDEX vehicles_geo ON vehicles (latitude, longitude, status, vehicle_type, price_minor, year, created_at, make, branch, id);
-- Partial: most vehicles are held by no one, and planner statistics over all
-- those NULLs would otherwise talk the planner out of using the index.
CREATE INDEX vehicles_held_by ON vehicles (held_by) WHERE held_by IS NOT NULL;
-- Facets group the filtered rows by these.
CREATE INDEX vehicles_facets ON vehicles (status, vehicle_type, make, branch);

-- Words of make, model and description, for free-text search by word prefix
-- through an index on both engines.
CREATE TABLE vehicle_terms (
    term TEXT NOT NULL,
    vehicle_id TEXT NOT NULL REFERENCES vehicles (id),
    PRIMARY KEY (term, vehicle_id)
);
CREATE INDEX vehicle_terms_vehicle ON vehicle_terms (vehicle_id);

-- Every lifecycle move, with who and why. Ids are UUIDv7, so the table doubles
-- as the ordered feed behind the availability stream (Last-Event-ID is an id).
CREATE TABLE vehicle_status_history (
    id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL REFERENCES vehicles (id),
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    actor_id TEXT,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX vehicle_status_history_vehicle ON vehicle_status_history (vehicle_id, id);

CREATE TABLE vehicle_photos (
    id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL REFERENCES vehicles (id),
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    data BYTEA NOT NULL,
    thumbnail BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX vehicle_photos_vehicle ON vehicle_photos (vehicle_id, id);

-- Holds on vehicles. The two partial unique indexes are the rule "one active
-- reservation per vehicle and one per customer", enforced by the database so
-- that racing requests cannot both win.
CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    vehicle_id TEXT NOT NULL REFERENCES vehicles (id),
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'expired', 'cancelled', 'released', 'converted')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    ended_by TEXT,
    end_reason TEXT,
    contract_id TEXT
);
CREATE UNIQUE INDEX reservations_one_per_vehicle ON reservations (vehicle_id) WHERE status = 'active';
CREATE UNIQUE INDEX reservations_one_per_customer ON reservations (customer_id) WHERE status = 'active';
CREATE INDEX reservations_expiry ON reservations (status, expires_at);
CREATE INDEX reservations_customer ON reservations (customer_id, id);
