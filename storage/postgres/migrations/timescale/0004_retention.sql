-- Raw collection attempts are diagnostics, not billing data: keep them for a bounded
-- time when [storage] attempts_retention_days is set ({retention_days}; 0 = keep all).
SELECT CASE WHEN {retention_days} > 0
            THEN add_retention_policy('collection_attempts',
                                      make_interval(days => {retention_days}),
                                      if_not_exists => TRUE)
       END;
