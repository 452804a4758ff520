-- Participation records (docs/architecture.md §6): one row per authenticated user per session.
-- Times are TEXT in UTC ("YYYY-MM-DD HH:MM:SS.fff+00:00"), which sorts in time order.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    created_at     TIMESTAMP NOT NULL,
    last_active_at TIMESTAMP NOT NULL,
    ended_at       TIMESTAMP NULL
);

CREATE TABLE session_participants (
    session_id      TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    display_name    TEXT NOT NULL,
    first_joined_at TIMESTAMP NOT NULL,
    last_joined_at  TIMESTAMP NOT NULL,
    last_left_at    TIMESTAMP NULL,
    join_count      BIGINT NOT NULL DEFAULT 0 CHECK (join_count >= 0),
    PRIMARY KEY (session_id, user_id)
) WITHOUT ROWID;

-- "My sessions": a user's rows, most recently joined first.
CREATE INDEX session_participants_user_recent
    ON session_participants (user_id, last_joined_at DESC);
