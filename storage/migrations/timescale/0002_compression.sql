-- Interval data compresses well segmented by series: one segment per (meter, quantity).
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'meter_id, quantity',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('readings', INTERVAL '14 days', if_not_exists => TRUE);

ALTER TABLE collection_attempts SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'meter_id',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('collection_attempts', INTERVAL '14 days', if_not_exists => TRUE);
