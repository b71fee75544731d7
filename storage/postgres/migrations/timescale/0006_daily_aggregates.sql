-- The plain view readings_daily reads a continuous aggregate instead: each series'
-- opening value per local day in the configured time zone ({timezone} is filled in by
-- `collector db migrate` from collector.toml). The aggregate groups by series only (no
-- join inside it); the views on top pick the forward-energy series by name.
DROP VIEW IF EXISTS area_consumption_daily;
DROP VIEW IF EXISTS consumption_daily;
DROP VIEW IF EXISTS readings_daily;
DROP VIEW IF EXISTS meter_openings_daily;

CREATE MATERIALIZED VIEW readings_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT series_id,
       time_bucket(INTERVAL '1 day', ts, timezone => {timezone})  AS bucket,
       first(value, ts)                                          AS opening,
       min(ts)                                                   AS opening_ts,
       count(*)                                                  AS reads
FROM readings
GROUP BY series_id, time_bucket(INTERVAL '1 day', ts, timezone => {timezone})
WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_daily',
    start_offset => INTERVAL '7 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes',
    if_not_exists => TRUE);

-- The same views as the plain path (real-time: materialized buckets plus the raw tail);
-- a frozen midnight value counts where the interval read of that instant is missing.
CREATE VIEW meter_openings_daily AS
SELECT DISTINCT ON (s.meter_id, d.bucket) s.meter_id, d.bucket, d.opening, d.opening_ts
FROM readings_daily d
JOIN series s ON s.id = d.series_id
WHERE s.quantity = '1-0:1.8.0' AND s.kind IN ('interval', 'daily')
ORDER BY s.meter_id, d.bucket, d.opening_ts, s.kind = 'daily';

CREATE VIEW consumption_daily AS
WITH d AS (
    SELECT meter_id, (bucket AT TIME ZONE {timezone})::date AS day, opening, opening_ts,
           lead((bucket AT TIME ZONE {timezone})::date) OVER w AS next_day,
           lead(opening) OVER w AS next_opening,
           lead(opening_ts) OVER w AS next_opening_ts,
           bucket,
           lead(bucket) OVER w AS next_bucket
    FROM meter_openings_daily
    WINDOW w AS (PARTITION BY meter_id ORDER BY bucket)
)
SELECT meter_id, day, next_opening - opening AS kwh
FROM d
WHERE next_day = day + 1 AND opening_ts = bucket AND next_opening_ts = next_bucket;

CREATE VIEW area_consumption_daily AS
SELECT m.area, c.day, sum(c.kwh) AS kwh, count(*) AS meters
FROM consumption_daily c
JOIN meters m ON m.id = c.meter_id
WHERE m.area <> '' AND NOT m.area_meter
GROUP BY m.area, c.day;
