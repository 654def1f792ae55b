"""Talking to Conductor: the HTTP client, credentials, wire records, lookup, status, retry."""
