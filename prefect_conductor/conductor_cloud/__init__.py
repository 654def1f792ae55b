"""The Conductor domain: job model, frames, templates, packages, validation, payload, client.

Imports neither Prefect nor the host's ``ix`` module, so it runs in the host, in a flow, in the
CLI and in tests alike.
"""
