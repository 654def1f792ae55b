"""The CLI's per-user Prefect server on loopback, and which Prefect API a command uses."""
