-- Commands an operator queues for a meter from the web view or the API: the daemon
-- that reaches the meter's bus takes them in order, runs them and writes the answer.

CREATE TABLE meter_commands (
    id            bigserial PRIMARY KEY,
    meter_id      text NOT NULL,
    command       text NOT NULL CHECK (command IN ('read', 'time_sync', 'trip', 'reconnect')),
    reason        text NOT NULL DEFAULT '',
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    status        text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    done_at       timestamptz,
    result        text NOT NULL DEFAULT ''
);

CREATE INDEX meter_commands_queued ON meter_commands (id) WHERE status = 'queued';
CREATE INDEX meter_commands_meter ON meter_commands (meter_id, id);
