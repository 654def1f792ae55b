"""prefect-conductor: the Conductor cloud-render submitter for the Jobs host, as Prefect flows.

The package is split by who may import what (see DESIGN.md):
``host_export`` -> ``conductor_cloud`` <- ``tasks`` <- ``flows``.
Importing this top-level package must stay cheap and must never import Prefect, because the host's
embedded Python loads ``prefect_conductor.host_export`` through it.
"""

__version__ = "0.1.0"
