-- Daily opening register per meter and local day: the forward active energy register
-- as read at the first instant of the day. Consumption of a day is the next day's
-- opening minus this one, so DST days carry 23 or 25 hours.
-- With TimescaleDB, timescale/0003 replaces this view by a continuous aggregate of the
-- same name and columns.
CREATE VIEW readings_daily AS
SELECT r.meter_id,
       (r.ts AT TIME ZONE s.value)::date                AS day,
       (array_agg(r.value ORDER BY r.ts))[1]            AS opening,
       min(r.ts)                                        AS opening_ts,
       count(*)                                         AS reads
FROM readings r
CROSS JOIN (SELECT value FROM collector_settings WHERE key = 'timezone') s
WHERE r.quantity = '1-0:1.8.0'
GROUP BY r.meter_id, (r.ts AT TIME ZONE s.value)::date;

-- Daily consumption per meter and per transformer area (customer meters only).
CREATE VIEW consumption_daily AS
WITH d AS (
    SELECT meter_id, day, opening, opening_ts,
           lead(day) OVER w        AS next_day,
           lead(opening) OVER w    AS next_opening,
           lead(opening_ts) OVER w AS next_opening_ts
    FROM readings_daily
    WINDOW w AS (PARTITION BY meter_id ORDER BY day)
)
SELECT d.meter_id, d.day, d.next_opening - d.opening AS kwh
FROM d
CROSS JOIN (SELECT value FROM collector_settings WHERE key = 'timezone') s
WHERE d.next_day = d.day + 1
  AND d.opening_ts = (d.day::timestamp AT TIME ZONE s.value)
  AND d.next_opening_ts = (d.next_day::timestamp AT TIME ZONE s.value);

CREATE VIEW area_consumption_daily AS
SELECT m.area, c.day, sum(c.kwh) AS kwh, count(*) AS meters
FROM consumption_daily c
JOIN meters m ON m.id = c.meter_id
WHERE m.area <> '' AND NOT m.area_meter
GROUP BY m.area, c.day;
