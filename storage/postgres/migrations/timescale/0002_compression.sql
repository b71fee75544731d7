-- readings' compression moved to 0005 with the series-keyed table.
ALTER TABLE collection_attempts SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'meter_id',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('collection_attempts', INTERVAL '14 days', if_not_exists => TRUE);
