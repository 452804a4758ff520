DROP TABLE session_participants;
DROP TABLE sessions;
