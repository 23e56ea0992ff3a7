"""An Azure Blob Storage target (``az://container/prefix``), through adlfs.

``storage_options`` go to :class:`adlfs.AzureBlobFileSystem` (``connection_string``, or
``account_name`` with ``account_key``/``sas_token``/``credential``, ``connection_timeout``,
``read_timeout``, ...), plus ``retries``: how many attempts the Azure SDK makes per request
(default 4: the SDK's three retries).

Metadata goes in the same request as the data (``Put Blob`` or ``Put Block List``). A streamed
write binds its metadata at the final ``Put Block List``, so it is always set at close. adlfs
keeps its own ``is_directory`` key on every blob; it is stored but never reported. Non-ASCII
values are stored as RFC 2047 encoded words (Azure sends metadata as HTTP headers).

A multipart upload (:meth:`AzureTarget.open_multipart`) stages each part as a block of the blob
(``Put Block``, ids of one length per upload) and commits the listed blocks with the metadata for the
real size (``Put Block List``). Staged blocks are invisible; Azure has no call to delete them, and
discards them at the blob's next commit or after a week, so an aborted upload leaves nothing visible.

Names holding U+FFFE or U+FFFF, the only characters a logical path may hold that XML 1.0 cannot
carry, are refused (``InvalidPathError``): Azure lists blobs in XML, and one such blob made the
listing of the whole container fail (Azurite answers 500), which would stop ``reindex`` and
``fsck`` for the backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import adlfs  # type: ignore[import-untyped]
import azure.core.exceptions as azure_errors
from azure.core import MatchConditions
from azure.storage.blob.aio import BlobClient, BlobServiceClient
from fsspec.asyn import sync  # type: ignore[import-untyped]

from greenroute.errors import InvalidPathError, StorageError
from greenroute.model import Backend, Provider

from ._fsspec_target import Fault, FsspecTarget, Stamp, split_root
from ._multipart import StagedUpload

__all__ = ["AzureTarget", "AzureUpload", "from_backend"]

_ADLFS_KEY = "is_directory"
_COPY_WAIT_S = 600.0
#: What XML 1.0 cannot carry, beyond the control characters and surrogates no logical path holds.
_NOT_XML = frozenset("\ufffe\uffff")


class _AzureBlobFileSystem(adlfs.AzureBlobFileSystem):  # type: ignore[misc]
    """adlfs whose service client gets a per-instance number of attempts (``retries``)."""

    service_client: Any

    def __init__(self, *args: Any, retries: int | None = None, **kwargs: Any) -> None:
        self._greenroute_client_kwargs: dict[str, Any] = (
            {} if retries is None else {"retry_total": max(0, int(retries) - 1)})
        super().__init__(*args, **kwargs)

    def do_connect(self) -> None:
        super().do_connect()
        if self._greenroute_client_kwargs:
            old: Any = self.service_client
            self.service_client = BlobServiceClient(account_url=old.url, credential=old.credential,
                                                    **self._greenroute_client_kwargs)


class AzureTarget(FsspecTarget):
    """Blobs in one Azure container, under an optional prefix."""

    provider = Provider.AZURE
    ascii_metadata = True
    max_metadata_bytes = 8192

    def __init__(self, backend: Backend) -> None:
        container, prefix = split_root(backend, ("az", "abfs", "abfss"))
        options = dict(backend.storage_options)
        options.setdefault("use_listings_cache", False)
        fs = _AzureBlobFileSystem(**options)
        super().__init__(backend, fs, f"{container}/{prefix}" if prefix else container)

    def _full(self, path: str) -> str:
        unlistable = sorted({ch for ch in path if ch in _NOT_XML})
        if unlistable:
            raise InvalidPathError(path, f"contains {' '.join(f'U+{ord(ch):04X}' for ch in unlistable)}, which "
                                         "Azure's XML listings cannot carry")
        return super()._full(path)

    def _blob(self, full: str) -> BlobClient:
        container, blob, _ = self.fs.split_path(full)
        return self.fs.service_client.get_container_client(container).get_blob_client(blob)  # type: ignore[no-any-return]

    @staticmethod
    def _with_adlfs_key(metadata: Mapping[str, str]) -> dict[str, str]:
        return {**metadata, _ADLFS_KEY: "false"}

    def _put(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        stamp: Stamp = sync(self.fs.loop, self._aput, full, data, metadata)
        return stamp

    async def _aput(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        out = await self._blob(full).upload_blob(data, metadata=self._with_adlfs_key(metadata), overwrite=True)
        self.fs.invalidate_cache(full)
        return self._etag(out), out.get("last_modified")

    def _open_inner(self, full: str, block_size: int | None, metadata: dict[str, str] | None) -> Any:
        return self.fs.open(full, "wb", block_size=block_size,
                            metadata=self._with_adlfs_key(metadata or {}))

    def _commit_started(self, inner: Any, full: str, metadata: dict[str, str],
                        upfront: dict[str, str] | None) -> Stamp:
        inner.metadata = self._with_adlfs_key(metadata)  # sent with the final Put Block List
        inner.close()
        return None, None

    def _raw_metadata(self, full: str, info: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: v for k, v in (info.get("metadata") or {}).items() if k != _ADLFS_KEY}

    def _delete_if_unchanged(self, full: str, info: Mapping[str, Any]) -> bool:
        etag = info.get("etag")
        if not etag:
            return super()._delete_if_unchanged(full, info)
        try:  # Azure checks the ETag and deletes in one step: a newer blob under the name survives
            sync(self.fs.loop, self._blob(full).delete_blob, etag=etag, match_condition=MatchConditions.IfNotModified)
        except azure_errors.ResourceModifiedError:
            return False
        finally:
            self.fs.invalidate_cache(full)
        return True

    def _copy(self, source: str, target: str, metadata: dict[str, str]) -> None:
        sync(self.fs.loop, self._copy_async, source, target, self._with_adlfs_key(metadata))
        self.fs.invalidate_cache(target)

    async def _copy_async(self, source: str, target: str, metadata: dict[str, str]) -> None:
        destination = self._blob(target)
        copy = await destination.start_copy_from_url(self._blob(source).url, metadata=metadata)
        status, deadline, wait = copy.get("copy_status"), time.monotonic() + _COPY_WAIT_S, 0.05
        while status == "pending" and time.monotonic() < deadline:
            await asyncio.sleep(wait)
            wait = min(wait * 2, 2.0)
            status = (await destination.get_blob_properties()).copy.status
        if status != "success":
            raise StorageError(f"{self.backend.id}: copy to {self.url(target[len(self._root) + 1:])} "
                               f"ended as {status!r}", backend_id=self.backend.id)

    def open_multipart(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]], *,
                       size_hint: int | None = None) -> AzureUpload:
        """A multipart upload whose parts are staged blocks of the blob until it completes."""
        return AzureUpload(self, path, metadata_at_close, size_hint)

    def _classify(self, exc: BaseException) -> Fault | None:
        if isinstance(exc, azure_errors.ServiceRequestError | azure_errors.ServiceResponseError):
            return "unavailable"
        if isinstance(exc, azure_errors.HttpResponseError):
            status = int(exc.status_code or 0)
            if status >= 500 or status in (408, 429):
                return "unavailable"
            if status in (401, 403) or isinstance(exc, azure_errors.ClientAuthenticationError):
                return "denied"
            return "missing" if status == 404 else None
        return super()._classify(exc)


class AzureUpload(StagedUpload):
    """A multipart upload to an :class:`AzureTarget`: one staged block per part, committed at complete."""

    def __init__(self, target: AzureTarget, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                 size_hint: int | None) -> None:
        super().__init__(target, path, metadata_at_close, size_hint)
        self._azure = target
        self._client = target._blob(self._full)

    def _block(self, number: int) -> str:
        return f"{self._token}-{number:05d}"  # every block id of a blob must have one length

    def _send(self, number: int, data: bytes) -> str | None:
        sync(self._azure.fs.loop, self._client.stage_block, self._block(number), data, length=len(data))
        return None

    def _join(self, numbers: list[int], stored: dict[str, str], size: int) -> Stamp:
        out = sync(self._azure.fs.loop, self._client.commit_block_list, [self._block(n) for n in numbers],
                   metadata=self._azure._with_adlfs_key(stored))
        self._azure.fs.invalidate_cache(self._full)
        return self._azure._etag(out), out.get("last_modified")

    def _drop(self) -> None:
        """Nothing to delete: staged blocks are invisible, and Azure discards them (see the module docstring)."""


def from_backend(backend: Backend) -> AzureTarget:
    """The ``greenroute.targets`` entry point for ``provider = "azure"``."""
    return AzureTarget(backend)
