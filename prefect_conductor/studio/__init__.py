"""The studio stack (issue 12): PostgreSQL, a Prefect server on it, a process pool, N workers."""
