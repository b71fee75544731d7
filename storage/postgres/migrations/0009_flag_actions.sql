-- An operator's work on a flag: acknowledged, assigned, noted, closed, each a row with
-- who and when, so the alarm's history is never overwritten. Closing also clears the
-- flag itself (flags.status), as `collector flags clear` does.

CREATE TABLE flag_actions (
    id        bigserial PRIMARY KEY,
    flag_id   bigint NOT NULL REFERENCES flags (id),
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL CHECK (action IN ('acknowledge', 'assign', 'note', 'close')),
    assignee  text NOT NULL DEFAULT '',
    note      text NOT NULL DEFAULT ''
);

CREATE INDEX flag_actions_flag ON flag_actions (flag_id, id);
