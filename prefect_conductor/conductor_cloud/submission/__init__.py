"""A submission without Prefect: the frame plan, the payloads and what preview shows."""
