-- Core tables. Plain PostgreSQL >= 14; TimescaleDB features are layered on by timescale/.

CREATE TABLE meters (
    id          text PRIMARY KEY,
    protocol    text NOT NULL,
    bus         text NOT NULL,
    address     text NOT NULL,
    model       text NOT NULL DEFAULT '',
    multiplier  double precision NOT NULL DEFAULT 1,
    area        text NOT NULL DEFAULT '',
    exporter    boolean NOT NULL DEFAULT false,
    gateway     text NOT NULL DEFAULT '',
    area_meter  boolean NOT NULL DEFAULT false,
    phases      smallint NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meters_area ON meters (area);

-- One row per (meter, OBIS quantity, instant). Interval values are stamped at the
-- interval's end. This key is what makes every write idempotent.
CREATE TABLE readings (
    meter_id    text NOT NULL,
    quantity    text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    unit        text NOT NULL,
    quality     text NOT NULL,
    method      text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, quantity, ts)
);

CREATE TABLE events (
    meter_id    text NOT NULL,
    ts          timestamptz NOT NULL,
    kind        text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, ts, kind)
);

CREATE TABLE collection_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    meter_id    text NOT NULL,
    bus         text NOT NULL,
    gateway     text NOT NULL DEFAULT '',
    ts          timestamptz NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'timeout', 'error')),
    latency_ms  double precision NOT NULL,
    error       text NOT NULL DEFAULT '',
    PRIMARY KEY (id, ts)
);
CREATE INDEX collection_attempts_ts ON collection_attempts (ts);
CREATE INDEX collection_attempts_meter_ts ON collection_attempts (meter_id, ts);

CREATE TABLE flags (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject     text NOT NULL,
    area        text NOT NULL DEFAULT '',
    kind        text NOT NULL,
    severity    text NOT NULL,
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    evidence    jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cleared')),
    raised_at   timestamptz NOT NULL DEFAULT now(),
    cleared_at  timestamptz
);
-- A flag is raised once and stays open until cleared.
CREATE UNIQUE INDEX flags_one_open ON flags (subject, kind) WHERE status = 'open';

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Settings the views need (the reporting time zone); written by `collector db migrate`.
CREATE TABLE collector_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO collector_settings VALUES ('timezone', 'UTC');

-- Quality precedence, the same ranks as collector.model.Quality.rank.
CREATE FUNCTION quality_rank(q text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE q WHEN 'A' THEN 3 WHEN 'F' THEN 2 WHEN 'S' THEN 2
                    WHEN 'E' THEN 1 WHEN 'V' THEN 1 ELSE 0 END $$;
