-- The plain view readings_daily becomes a continuous aggregate with the same columns,
-- bucketed by local day in the configured time zone ({timezone} is filled in by
-- `collector db migrate` from collector.toml).
DROP VIEW IF EXISTS area_consumption_daily;
DROP VIEW IF EXISTS consumption_daily;
DROP VIEW IF EXISTS readings_daily;

CREATE MATERIALIZED VIEW readings_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT meter_id,
       time_bucket(INTERVAL '1 day', ts, timezone => {timezone})  AS bucket,
       first(value, ts)                               AS opening,
       min(ts)                                        AS opening_ts,
       count(*)                                       AS reads
FROM readings
WHERE quantity = '1-0:1.8.0'
GROUP BY meter_id, time_bucket(INTERVAL '1 day', ts, timezone => {timezone})
WITH NO DATA;

SELECT add_continuous_aggregate_policy('readings_daily',
    start_offset => INTERVAL '7 days',
    end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '30 minutes',
    if_not_exists => TRUE);

-- The same views as the plain path, reading the aggregate (real-time: materialized
-- buckets plus the raw tail).
CREATE VIEW consumption_daily AS
WITH d AS (
    SELECT meter_id, (bucket AT TIME ZONE {timezone})::date AS day, opening, opening_ts,
           lead((bucket AT TIME ZONE {timezone})::date) OVER w AS next_day,
           lead(opening) OVER w AS next_opening,
           lead(opening_ts) OVER w AS next_opening_ts,
           bucket,
           lead(bucket) OVER w AS next_bucket
    FROM readings_daily
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
