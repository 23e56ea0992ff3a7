"""Reads of :class:`~greenroute.adapters.boto3.client.GreenS3Client`: ``get_object`` and ``head_object``.

The catalog names the object's backend. An object on an S3 backend is read through that backend's
real client, so ``Range``, conditional headers and the ``StreamingBody`` are boto3's own. An object
on a GCS or Azure backend is read through greenroute's storage target, and this module gives its
answer the same shape: ``Range`` (S3's rules for bad and unsatisfiable ranges), ``IfMatch``,
``IfNoneMatch``, ``If(Un)ModifiedSince`` and the ``Response*`` header overrides.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from datetime import datetime
from typing import IO, Any, NoReturn

import botocore.exceptions  # type: ignore[import-untyped]
import botocore.response  # type: ignore[import-untyped]

from greenroute.model import CatalogEntry
from greenroute.router import GreenRouter

from ..storage._fsspec_target import canonical_metadata
from ._passthrough import RealClients
from ._shaping import Shaper, quote_etag, response_metadata

__all__ = ["RangeReader", "Reads"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_DEFAULT_CONTENT_TYPE = "binary/octet-stream"


class RangeReader(io.RawIOBase):
    """At most ``length`` bytes of a target's read stream: the raw stream under a ``StreamingBody``."""

    def __init__(self, inner: IO[bytes], length: int) -> None:
        super().__init__()
        self._inner = inner
        self._left = length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes; all that is left when ``size`` is ``None`` or negative (as botocore asks)."""
        return self.readall() if size is None or size < 0 else super().read(size) or b""

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._left <= 0 or view.nbytes == 0:
            return 0
        data = self._inner.read(min(view.nbytes, self._left))
        view[:len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                super().close()


class Reads:
    """Finds and reads logical objects for one client.

    Args:
        router: The router whose catalog finds objects and whose targets read them.
        shaper: Checks requests and builds the S3 errors.
        clients: The real clients, for objects on S3 backends.
    """

    def __init__(self, router: GreenRouter, shaper: Shaper, clients: RealClients) -> None:
        self._router = router
        self._shape = shaper
        self._clients = clients

    def lookup(self, operation: str, bucket: str, key: str, *, missing: str = "NoSuchKey") -> CatalogEntry:
        """The catalog entry of ``bucket/key``; ``missing`` is the error code when there is none."""
        entry = self._router.lookup(f"{bucket}/{key}")
        if entry is None:
            raise self._shape.missing(missing, operation, key)
        return entry

    def read(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer ``GetObject`` or ``HeadObject`` for a logical object."""
        self._shape.check(operation, params, reading=True)
        bucket, key = params["Bucket"], params["Key"]
        head = operation == "HeadObject"
        entry = self.lookup(operation, bucket, key, missing="404" if head else "NoSuchKey")
        physical = self._clients.physical(entry)
        if physical is not None:
            client, phys_bucket, phys_key = physical
            call = {k: v for k, v in params.items() if k != "ExpectedBucketOwner"}
            call.update(Bucket=phys_bucket, Key=phys_key)
            try:
                response: dict[str, Any] = (client.head_object if head else client.get_object)(**call)
            except botocore.exceptions.ClientError as exc:
                self._shape.from_physical(exc, operation, key, entry)
            except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
                raise self._shape.error("ServiceUnavailable", f"{entry.backend_id} is unreachable: {exc}", operation,
                                        503, backend_id=entry.backend_id, location=entry.url) from exc
            response["Metadata"] = self._with_late_values(client, call, response)
            response.setdefault("ResponseMetadata", {}).update(GreenrouteBackend=entry.backend_id,
                                                               GreenrouteLocation=entry.url)
            return response
        return self._read_target(operation, params, entry, head)

    @staticmethod
    def _with_late_values(client: Any, call: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, str]:
        """The object's metadata, with the carbon values an S3 target bound late as tags merged in.

        A stream or multipart upload whose size was unknown at its start carries a marker instead
        (see :mod:`greenroute.adapters.storage.s3`); only such objects cost a ``GetObjectTagging``.
        """
        raw = dict(response.get("Metadata") or {})
        from ..storage.s3 import LATE_KEY, _merge_late  # the S3 target's own rule (only it writes the marker)

        if LATE_KEY in raw:
            version = response.get("VersionId")
            tagging = client.get_object_tagging(Bucket=call["Bucket"], Key=call["Key"],
                                                **({"VersionId": version} if version and version != "null" else {}))
            raw = _merge_late(raw, tagging)
        return canonical_metadata(raw)

    def _read_target(self, operation: str, params: Mapping[str, Any], entry: CatalogEntry,
                     head: bool) -> dict[str, Any]:
        key = params["Key"]
        with self._shape.errors(operation, key, missing="404" if head else "NoSuchKey", backend_id=entry.backend_id):
            target = self._router.target(entry.backend_id)
            info = target.stat(entry.path)
        etag = quote_etag(info.etag or entry.etag)
        modified = info.modified or entry.updated_at
        self._preconditions(operation, params, etag, modified, entry)
        size = info.size
        status, start, length = 200, 0, size
        response: dict[str, Any] = {"AcceptRanges": "bytes", "LastModified": modified, "ETag": etag,
                                    "ContentType": _DEFAULT_CONTENT_TYPE, "Metadata": dict(info.metadata)}
        wanted = params.get("Range")
        span = self._range(operation, wanted, size, entry) if wanted else None
        if span is not None:
            start, end = span
            status, length = 206, end - start + 1
            response["ContentRange"] = f"bytes {start}-{end}/{size}"
        response["ContentLength"] = length
        for name in ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "ContentType",
                     "Expires"):
            if f"Response{name}" in params:
                response[name] = params[f"Response{name}"]
        if not head:
            with self._shape.errors(operation, key, backend_id=entry.backend_id):
                stream = target.open_read(entry.path)
                try:
                    if start:
                        stream.seek(start)
                except BaseException:
                    stream.close()
                    raise
            response["Body"] = botocore.response.StreamingBody(RangeReader(stream, length), length)
        response["ResponseMetadata"] = response_metadata(status, backend_id=entry.backend_id, location=entry.url)
        return response

    def _preconditions(self, operation: str, params: Mapping[str, Any], etag: str, modified: datetime,
                       entry: CatalogEntry) -> None:
        def fail(code: str, message: str, status: int) -> NoReturn:
            raise self._shape.error(code, message, operation, status, backend_id=entry.backend_id, location=entry.url)

        def matches(header: str) -> bool:
            return any(t.strip() in ("*", etag, etag.strip('"')) for t in header.split(","))

        if "IfMatch" in params and not matches(params["IfMatch"]):
            fail("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412)
        if "IfUnmodifiedSince" in params and "IfMatch" not in params and modified > params["IfUnmodifiedSince"]:
            fail("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412)
        if "IfNoneMatch" in params and matches(params["IfNoneMatch"]):
            fail("304", "Not Modified", 304)
        if "IfModifiedSince" in params and "IfNoneMatch" not in params and modified <= params["IfModifiedSince"]:
            fail("304", "Not Modified", 304)

    def _range(self, operation: str, header: str, size: int, entry: CatalogEntry) -> tuple[int, int] | None:
        """The inclusive byte span of a ``Range`` header; ``None`` means the whole object (as S3 ignores bad syntax)."""
        match = _RANGE.match(header.strip())
        if match is None or (not match[1] and not match[2]):
            return None
        if not match[1]:
            suffix = int(match[2])
            if suffix == 0 or size == 0:
                raise self._invalid_range(operation, size, entry)
            return max(0, size - suffix), size - 1
        start = int(match[1])
        end = int(match[2]) if match[2] else None
        if end is not None and end < start:
            return None
        if start >= size:
            raise self._invalid_range(operation, size, entry)
        return start, size - 1 if end is None else min(end, size - 1)

    def _invalid_range(self, operation: str, size: int, entry: CatalogEntry) -> Any:
        return self._shape.error("InvalidRange", "The requested range is not satisfiable", operation, 416,
                                 backend_id=entry.backend_id, location=entry.url, ActualObjectSize=str(size))
