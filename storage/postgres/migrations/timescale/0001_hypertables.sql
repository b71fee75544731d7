-- TimescaleDB only (documented 2.x API). Applied by storage/timescale.py when the
-- extension is present; plain PostgreSQL never runs anything in this folder.
-- readings became a hypertable here until it was narrowed to series keys; 0005 makes the
-- narrow table one (an existing database's old hypertable is dropped by 0004 after its
-- rows are converted).
SELECT create_hypertable('events', 'ts', chunk_time_interval => INTERVAL '30 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('collection_attempts', 'ts', chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
