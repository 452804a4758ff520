-- Participation records (docs/architecture.md §6): one row per authenticated user per session.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 128),
    created_at     TIMESTAMPTZ NOT NULL,
    last_active_at TIMESTAMPTZ NOT NULL,
    ended_at       TIMESTAMPTZ NULL
);

CREATE TABLE session_participants (
    session_id      TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 128),
    display_name    TEXT NOT NULL,
    first_joined_at TIMESTAMPTZ NOT NULL,
    last_joined_at  TIMESTAMPTZ NOT NULL,
    last_left_at    TIMESTAMPTZ NULL,
    join_count      BIGINT NOT NULL DEFAULT 0 CHECK (join_count >= 0),
    PRIMARY KEY (session_id, user_id)
);

-- "My sessions": a user's rows, most recently joined first.
CREATE INDEX session_participants_user_recent
    ON session_participants (user_id, last_joined_at DESC);
