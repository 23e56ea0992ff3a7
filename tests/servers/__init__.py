"""Local storage servers (moto, the GCS emulator, Azurite) for integration tests.

Import the pytest fixtures from :mod:`tests.servers.fixtures` into a ``conftest.py``::

    from tests.servers.fixtures import azurite_server, gcs_server, moto_server  # noqa: F401
"""

from tests.servers.local import (
    LocalServer,
    ServerUnavailable,
    azure_storage_options,
    closed_port,
    create_azure_container,
    create_gcs_bucket,
    create_s3_bucket,
    gcs_storage_options,
    s3_storage_options,
    start_azurite,
    start_gcs_emulator,
    start_moto,
)

__all__ = [
    "LocalServer",
    "ServerUnavailable",
    "azure_storage_options",
    "closed_port",
    "create_azure_container",
    "create_gcs_bucket",
    "create_s3_bucket",
    "gcs_storage_options",
    "s3_storage_options",
    "start_azurite",
    "start_gcs_emulator",
    "start_moto",
]
