"""Storage targets: where the bytes go (S3, GCS, Azure Blob, local files, memory).

Each module implements :class:`greenroute.ports.StorageTarget` (most through ``_fsspec_target.FsspecTarget``)
and exposes ``from_backend`` for the ``greenroute.targets`` entry point.
"""
