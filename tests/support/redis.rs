//! A private `redis-server` per test, on a free port, that the test may kill and restart.
