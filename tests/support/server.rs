//! Starting a rollcall server (in process, on a free port) for a test.
