"""Prefect flows: ``render_submit`` (the chain) and ``refresh_catalog``.

Imported only by deployments and the CLI."""
