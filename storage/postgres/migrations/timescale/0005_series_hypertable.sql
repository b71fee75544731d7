-- TimescaleDB only. The series-keyed readings as a hypertable, compressed per series:
-- a segment holds one series' values in time order, which is what the readers scan.
SELECT create_hypertable('readings', 'ts', chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'series_id',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('readings', INTERVAL '14 days', if_not_exists => TRUE);
