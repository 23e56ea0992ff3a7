"""An S3 storage target (``s3://bucket/prefix``), through s3fs.

``storage_options`` go to :class:`s3fs.S3FileSystem` (``endpoint_url``, ``key``, ``secret``,
``client_kwargs``, ``config_kwargs``, ...), plus ``retries``: how many attempts s3fs makes per call
(default 5); when it is set, botocore's own retries default to a single attempt too.

Metadata goes in the same request as the data (``PutObject`` or ``CreateMultipartUpload``). A
streamed write binds its metadata at close: into the single ``PutObject`` while the upload has
not gone multipart, otherwise by replacing the metadata with a server-side copy onto itself
(``CopyObject`` with ``MetadataDirective=REPLACE``) right after completion. Non-ASCII values are
stored as RFC 2047 encoded words, as S3 itself returns them, and decoded on reading.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]
import s3fs  # type: ignore[import-untyped]
from fsspec.asyn import sync  # type: ignore[import-untyped]

from greenroute.model import Backend, Provider

from ._fsspec_target import Fault, FsspecTarget, Stamp, cloud_filesystem
from ._multipart import PartReader, StagedUpload

__all__ = ["S3Target", "S3Upload", "from_backend"]

_MIN_PART = 5 * 2**20
_UNAVAILABLE_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                                "RequestTimeTooSkewed"})
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                           "AllAccessDisabled", "AccountProblem"})


class _S3FileSystem(s3fs.S3FileSystem):  # type: ignore[misc]
    """s3fs with a per-instance number of attempts (``retries``)."""

    def __init__(self, *args: Any, retries: int | None = None, **kwargs: Any) -> None:
        if retries is not None:
            config = dict(kwargs.get("config_kwargs") or {})
            config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
            kwargs["config_kwargs"] = config
        super().__init__(*args, **kwargs)
        if retries is not None:
            self.retries = max(1, int(retries))


class S3Target(FsspecTarget):
    """Objects in one S3 bucket, under an optional key prefix."""

    provider = Provider.S3
    ascii_metadata = True
    max_metadata_bytes = 2048

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend, *cloud_filesystem(backend, ("s3", "s3a"), _S3FileSystem))

    def _put(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        stamp: Stamp = sync(self.fs.loop, self._aput, full, data, metadata)
        return stamp

    async def _aput(self, full: str, data: bytes, metadata: dict[str, str]) -> Stamp:
        bucket, key, _ = self.fs.split_path(full)
        out = await self.fs._call_s3("put_object", Bucket=bucket, Key=key, Body=data, Metadata=metadata)
        self.fs.invalidate_cache(full)
        return self._etag(out), None

    def _open_inner(self, full: str, block_size: int | None, metadata: dict[str, str] | None) -> Any:
        extra = {"Metadata": dict(metadata)} if metadata is not None else {}
        return self.fs.open(full, "wb", block_size=max(block_size or self.fs.default_block_size, _MIN_PART), **extra)

    def _commit_started(self, inner: Any, full: str, metadata: dict[str, str],
                        upfront: dict[str, str] | None) -> Stamp:
        inner.close()  # completes the multipart upload, which carried ``upfront``
        if metadata != (upfront or {}):
            self._after_commit(full, lambda: self.fs.cp_file(full, full, Metadata=metadata,
                                                             MetadataDirective="REPLACE"))
        info, _ = self._stat(full)  # the multipart (or copied) object's own ETag, for the catalog
        return self._etag(info), None

    def _stat(self, full: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        bucket, key, _ = self.fs.split_path(full)
        head = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        info = {"size": head.get("ContentLength", 0), "ETag": head.get("ETag"),
                "LastModified": head.get("LastModified"), "type": "file"}
        return info, head.get("Metadata") or {}

    def _raw_metadata(self, full: str, info: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._stat(full)[1]

    def _list_metadata(self, entries: list[tuple[str, Mapping[str, Any]]]) -> list[Mapping[str, Any] | None]:
        async def head(name: str) -> Any:
            bucket, key, _ = self.fs.split_path(name)
            return await self.fs._call_s3("head_object", Bucket=bucket, Key=key)

        async def heads() -> list[Any]:
            return await asyncio.gather(*(head(name) for name, _ in entries), return_exceptions=True)

        out: list[Mapping[str, Any] | None] = []
        for result in sync(self.fs.loop, heads):
            if isinstance(result, FileNotFoundError):
                out.append(None)
            elif isinstance(result, BaseException):
                raise result
            else:
                out.append(result.get("Metadata") or {})
        return out

    def _delete(self, full: str) -> None:
        self._stat(full)  # S3 deletes a missing key without complaint
        self.fs.rm_file(full)

    def _delete_if_unchanged(self, full: str, info: Mapping[str, Any]) -> bool:
        bucket, key, _ = self.fs.split_path(full)
        return self._delete_checked(  # S3 checks the ETag
            full, lambda: self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=info["ETag"]),
            lambda exc: isinstance(exc, OSError) and _precondition_failed(exc))

    def _copy(self, source: str, target: str, metadata: dict[str, str]) -> None:
        self.fs.cp_file(source, target, Metadata=metadata, MetadataDirective="REPLACE")

    def _bind_metadata_after_upload(self, full: str, metadata: dict[str, str], upfront: dict[str, str]) -> str | None:
        """Give a completed multipart object (created with ``upfront``) ``metadata``; its new ETag, if it changed."""
        self._after_commit(full, lambda: self.fs.cp_file(full, full, Metadata=metadata, MetadataDirective="REPLACE"))
        return self._etag(self._stat(full)[0])

    def open_multipart(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]], *,
                       size_hint: int | None = None) -> S3Upload:
        """The bucket's own multipart upload (see :class:`S3Upload`)."""
        return S3Upload(self, path, metadata_at_close, size_hint)

    def _classify(self, exc: BaseException) -> Fault | None:
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if status >= 500 or code in _UNAVAILABLE_CODES:
                return "unavailable"
            if status == 404 or code in _MISSING_CODES:
                return "missing"
            if status == 403 or code in _DENIED_CODES:
                return "denied"
            return None
        if isinstance(exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
            return "unavailable"
        if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
            return "denied"
        return super()._classify(exc)


def _precondition_failed(exc: BaseException) -> bool:
    """Whether S3 refused a conditional request (412 PreconditionFailed), anywhere in ``exc``'s causes."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, botocore.exceptions.ClientError):
            response = current.response
            return (str(response.get("Error", {}).get("Code", "")) == "PreconditionFailed"
                    or int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) == 412)
        current = current.__cause__ or current.__context__
    return False


class S3Upload(StagedUpload):
    """A multipart upload to an :class:`S3Target`: the bucket's own, one UploadPart per part.

    S3 takes the metadata with CreateMultipartUpload, before the size is known: it gets the values
    for ``size_hint`` (the upload begins at once), or, without a hint, for the first part's size
    (the upload begins with the first part). If the completed object's size gives other values,
    they are bound after completion (:meth:`S3Target._bind_metadata_after_upload`).
    """

    def __init__(self, target: S3Target, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                 size_hint: int | None) -> None:
        super().__init__(target, path, metadata_at_close, size_hint)
        self._s3 = target
        self._bucket, self._key, _ = target.fs.split_path(self._full)
        self._upload_id: str | None = None
        self._begun = threading.Lock()
        self._etags: dict[int, str] = {}
        if size_hint is not None:
            with target._errors("write", path):
                self._begin(self._upfront)

    def _begin(self, metadata: dict[str, str]) -> str:
        with self._begun:
            if self._upload_id is None:
                out = self._s3.fs.call_s3("create_multipart_upload", Bucket=self._bucket, Key=self._key,
                                          Metadata=metadata)
                self._upfront, self._upload_id = metadata, str(out["UploadId"])
            return self._upload_id

    def _send(self, number: int, data: bytes) -> str | None:
        upload_id = self._upload_id or self._begin(
            self._s3._prepare_metadata(dict(self._metadata_at_close(len(data)))))
        out = self._s3.fs.call_s3("upload_part", Bucket=self._bucket, Key=self._key, UploadId=upload_id,
                                  PartNumber=number, Body=PartReader(data), ContentLength=len(data))
        etag = str(out["ETag"])
        with self._lock:
            self._etags[number] = etag
        return etag.strip('"')

    def _join(self, numbers: list[int], stored: dict[str, str], size: int) -> Stamp:
        with self._lock:
            parts = [{"PartNumber": n, "ETag": self._etags[n]} for n in numbers]
        out = self._s3.fs.call_s3("complete_multipart_upload", Bucket=self._bucket, Key=self._key,
                                  UploadId=self._upload_id, MultipartUpload={"Parts": parts})
        self._s3.fs.invalidate_cache(self._full)
        etag = self._s3._etag(out)
        if stored != self._upfront:
            etag = self._s3._bind_metadata_after_upload(self._full, stored, self._upfront) or etag
        return etag, None

    def _drop(self) -> None:
        if self._upload_id is not None:
            self._s3.fs.call_s3("abort_multipart_upload", Bucket=self._bucket, Key=self._key,
                                UploadId=self._upload_id)

    def _discard_staged(self) -> None:
        """Nothing: S3 drops the parts itself when the upload completes."""


def from_backend(backend: Backend) -> S3Target:
    """The ``greenroute.targets`` entry point for ``provider = "s3"``."""
    return S3Target(backend)
