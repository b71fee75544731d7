-- The daily continuous aggregate over the wide readings table lived here. It is built by
-- 0006 over the series-keyed table instead; a database that ran this version already has
-- had its aggregate dropped with the wide table by 0004_series_readings.
SELECT 1;
