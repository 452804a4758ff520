//! A WebSocket test client that records every frame it receives.
