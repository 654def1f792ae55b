"""Talking to Conductor: the HTTP client, credentials, wire records, job lookup, status and retry."""
