"""ConductorCredentials: a Prefect block holding the Conductor API key and address.

Why a typed block rather than a generic Secret: the UI shows a form with the two things a worker
needs (the key, hidden, and the Conductor URL), the key is stored encrypted and shown as
``********`` everywhere, and a flow run names the block (``RunOptions.credentials_block``) instead
of ever carrying the key as a parameter. Like prefect-aws ``AwsCredentials``, it hands out a ready
client: :meth:`ConductorCredentials.get_client`.

Register the type so it appears in the UI before any block exists::

    prefect block register -m prefect_conductor
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient


class ConductorCredentials(CredentialsBlock):
    """The Conductor API key (the JSON text of the key file) and, optionally, Conductor's URL."""

    _block_type_name: ClassVar[str] = "Conductor Credentials"
    _block_type_slug: ClassVar[str] = "conductor-credentials"
    _description: ClassVar[str] = (
        "The Conductor API key and address used by the render-submit flow. Name this block in"
        " the run's Credentials Block option."
    )

    api_key: SecretStr = Field(
        default=...,
        title="API Key",
        description=(
            "The whole JSON text of your Conductor API key file (or the bare key). Stored"
            " encrypted; shown as ******** in the UI and the API."
        ),
    )
    conductor_url: str = Field(
        default="",
        title="Conductor URL",
        description="Conductor's address; empty uses CONDUCTOR_URL on the worker.",
    )

    def api_key_value(self, source: str = "ConductorCredentials block") -> ApiKey:
        """The key parsed as the client expects it; parse errors name ``source``, not the key."""
        return ApiKey.from_text(self.api_key.get_secret_value(), source=source)

    def get_client(self, url: str | None = None) -> ConductorClient:
        """A ConductorClient for this key; ``url`` (a run option) wins over the block's URL."""
        return ConductorClient(url or self.conductor_url or None, self.api_key_value())
