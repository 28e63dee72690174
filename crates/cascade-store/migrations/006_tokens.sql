-- API tokens (DESIGN §8): a role, the scopes it is limited to, and only the SHA-256 of
-- its secret part; the token itself is shown once, when it is created.
CREATE TABLE api_tokens (
    -- The public part of the token (`cas_<id>_<secret>`), used to find its row.
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- read | submit | admin
    role        TEXT NOT NULL,
    -- JSON array of scopes (`project:web`); empty: every scope.
    scopes      TEXT NOT NULL DEFAULT '[]',
    -- Lowercase hex SHA-256 of the secret part.
    hash        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
-- A name is unique among the tokens still in force (a revoked name may be reused).
CREATE UNIQUE INDEX api_tokens_name ON api_tokens (name) WHERE revoked_at IS NULL;
