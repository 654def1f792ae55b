"""Conductor's side of the sandbox: the routes its clients call, the strict gate, the evidence."""
