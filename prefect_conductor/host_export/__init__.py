"""Code that runs inside the Jobs host: the ConductorJob item, its actions and the batch exporter.

Imports ``conductor_cloud`` and the host's ``ix`` module (through ``host_api``), never Prefect: the
host's embedded Python may be older than Prefect supports, and Submit must return at once.
"""
