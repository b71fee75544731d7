-- TimescaleDB only (documented 2.x API). Applied by storage/timescale.py when the
-- extension is present; plain PostgreSQL never runs anything in this folder.
SELECT create_hypertable('readings', 'ts', chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('events', 'ts', chunk_time_interval => INTERVAL '30 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('collection_attempts', 'ts', chunk_time_interval => INTERVAL '7 days',
                         if_not_exists => TRUE, migrate_data => TRUE);
