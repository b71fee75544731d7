-- Web sessions, kept beside the tokens they were opened with, so a restart of the API
-- logs nobody out and several API processes can serve the same users. Only a SHA-256 of
-- each session id is kept, as for tokens; a revoked token ends its sessions at once.

CREATE TABLE web_sessions (
    digest      text PRIMARY KEY,
    token       text NOT NULL REFERENCES api_tokens (name),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
