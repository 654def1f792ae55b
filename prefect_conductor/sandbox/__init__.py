"""A local Conductor-compatible HTTP API: the embedded default and the peer of every test."""
