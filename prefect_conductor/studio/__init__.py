"""The studio stack: PostgreSQL, a Prefect server on it, a process pool, N workers."""
