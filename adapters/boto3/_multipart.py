"""Multipart uploads of :class:`~greenroute.adapters.boto3.client.GreenS3Client`, streamed to the backend.

``create_multipart_upload`` places the object (:meth:`greenroute.GreenRouter.open_multipart`) on a
size hint when there is one: boto3's managed uploads know their size (:meth:`Uploads.expecting`), an
explicit upload does not, and S3 backends then take the first part's size as the estimate. Each
``upload_part`` goes straight to the chosen backend's own multipart upload (S3's, Azure's staged
blocks, GCS part objects, part files in a local target's folder), in any order and from any thread;
nothing is spooled on this machine, and a part is held in memory only while it is sent. A backend
fault fails over to the next-best backend until the first part is accepted, and is an error after
that. ``complete_multipart_upload`` checks the listed parts as S3 does, joins them on the backend
with the metadata of the real size and commits the catalog entry; ``IfNoneMatch="*"`` there makes
it an exclusive create (``PreconditionFailed`` when the key exists). ``abort_multipart_upload``
drops the backend's parts. Uploads live in one client object, so one upload cannot be shared
between processes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from greenroute.router import GreenRouter, MultipartUpload

from ._shaping import (
    Shaper,
    quote_etag,
    response_metadata,
    user_metadata,
    write_response,
)

__all__ = ["Uploads"]

log = logging.getLogger(__name__)

#: S3's smallest part, except the last one.
MIN_PART_BYTES = 5 * 2**20
MAX_PARTS = 10_000


@dataclass(frozen=True)
class _Part:
    """What S3 reports of an accepted part, to check a completion's part list against."""

    size: int
    etag: str
    #: Its CRC32, when the caller asked for one (``ChecksumAlgorithm="CRC32"``).
    crc32: str | None


@dataclass
class _Upload:
    """One multipart upload in progress: its logical key and path, the routed upload, its accepted parts."""

    upload_id: str
    bucket: str
    key: str
    path: str
    routed: MultipartUpload
    parts: dict[int, _Part] = field(default_factory=dict)
    #: Held by a completion or an abort (parts are sent without it, concurrently).
    lock: threading.Lock = field(default_factory=threading.Lock)


class Uploads:
    """The multipart uploads in progress on one client; each method takes already-checked parameters.

    Args:
        router: Places uploads and commits them.
        shaper: Builds the S3 errors.
        emit: Emits ``request-created`` for an operation and its body (s3transfer's progress hooks).
    """

    def __init__(self, router: GreenRouter, shaper: Shaper, emit: Callable[[str, Any], None]) -> None:
        self._router = router
        self._shape = shaper
        self._emit = emit
        self._uploads: dict[str, _Upload] = {}
        self._hints: dict[tuple[str, str], list[int]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def expecting(self, bucket: str, key: str, size: int | None) -> Iterator[None]:
        """While a managed transfer runs, a multipart upload it creates for ``bucket/key`` is ``size`` bytes.

        The size is a hint for placement and for S3, which needs the carbon values before the first
        part; the values are always bound from the real size at completion.
        """
        if size is None:
            yield
            return
        with self._lock:
            self._hints.setdefault((bucket, key), []).append(size)
        try:
            yield
        finally:
            with self._lock:
                waiting = self._hints.get((bucket, key), [])
                with contextlib.suppress(ValueError):
                    waiting.remove(size)  # not taken: the transfer used put_object
                if not waiting:
                    self._hints.pop((bucket, key), None)

    def create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Place an upload and begin it on the chosen backend (``CreateMultipartUpload``)."""
        op = "CreateMultipartUpload"
        bucket, key = params["Bucket"], params["Key"]
        path = self._shape.write_path(op, bucket, key)
        with self._lock:
            waiting = self._hints.get((bucket, key))
            hint = waiting.pop(0) if waiting else None
        with self._shape.errors(op, key, missing="NoSuchBucket"):
            routed = self._router.open_multipart(path, size_hint=hint, metadata=user_metadata(params.get("Metadata")))
        upload = _Upload(uuid.uuid4().hex, bucket, key, path, routed)
        with self._lock:
            self._uploads[upload.upload_id] = upload
        response = {"Bucket": bucket, "Key": key, "UploadId": upload.upload_id,
                    "ResponseMetadata": self._where(routed)}
        if "ChecksumAlgorithm" in params:
            response["ChecksumAlgorithm"] = params["ChecksumAlgorithm"]
        return response

    def upload_part(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send one part to the backend (``UploadPart``); re-uploading a part number replaces it."""
        op = "UploadPart"
        upload = self._upload(op, params)
        number = int(params["PartNumber"])
        if not 1 <= number <= MAX_PARTS:
            raise self._shape.error("InvalidArgument", f"Part number must be an integer between 1 and {MAX_PARTS}, "
                                    "inclusive", op, 400, ArgumentName="partNumber", ArgumentValue=str(number))
        body = params.get("Body")
        self._emit(op, body)
        data = _read(body)
        routed = upload.routed
        with self._shape.errors(op, upload.key, missing="NoSuchBucket", backend_id=routed.decision.backend_id):
            try:
                tag = routed.upload_part(number, data)
            except FileNotFoundError:
                if routed.closed:
                    raise self._no_such_upload(op, upload.upload_id) from None
                raise
        # An S3 backend's part ETag is the part's MD5 already; other backends give none, so it is computed.
        etag = tag or hashlib.md5(data, usedforsecurity=False).hexdigest()
        crc32 = None
        if str(params.get("ChecksumAlgorithm", "")).upper() == "CRC32":
            crc32 = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        upload.parts[number] = _Part(len(data), etag, crc32)
        del data
        response: dict[str, Any] = {"ETag": quote_etag(etag), "ResponseMetadata": self._where(routed)}
        if crc32 is not None:
            response["ChecksumCRC32"] = crc32
        return response

    def complete(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Join the listed parts on the backend and commit the object (``CompleteMultipartUpload``)."""
        op = "CompleteMultipartUpload"
        upload = self._upload(op, params)
        listed = list((params.get("MultipartUpload") or {}).get("Parts") or [])
        if not listed:
            raise self._shape.error("MalformedXML", "The XML you provided was not well-formed or did not validate "
                                    "against our published schema", op, 400)
        with upload.lock:
            if upload.routed.closed:
                raise self._no_such_upload(op, upload.upload_id)
            chosen = self._chosen(upload, listed)
            size = sum(upload.parts[n].size for n in chosen)
            if "MpuObjectSize" in params and int(params["MpuObjectSize"]) != size:
                raise self._shape.error("InvalidRequest", f"The provided MpuObjectSize ({params['MpuObjectSize']}) "
                                        f"does not match the size of the listed parts ({size})", op, 400)
            try:
                with self._shape.errors(op, upload.key, missing="NoSuchBucket",
                                        backend_id=upload.routed.decision.backend_id):
                    result = upload.routed.complete(chosen, exclusive=params.get("IfNoneMatch") == "*")
            finally:
                if upload.routed.closed:  # completed, even if its commit then failed: the id is spent
                    self._forget(upload)
        return write_response(result, Location=result.url, Bucket=upload.bucket, Key=upload.key)

    def abort(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Drop an upload and the parts the backend holds (``AbortMultipartUpload``); nothing was committed."""
        op = "AbortMultipartUpload"
        upload = self._upload(op, params)
        self._forget(upload)
        with upload.lock, self._shape.errors(op, upload.key, backend_id=upload.routed.decision.backend_id):
            upload.routed.abort()
        return {"ResponseMetadata": response_metadata(204)}

    def close(self) -> None:
        """Abort every upload in progress (a failure is logged: the backend expires unfinished uploads)."""
        with self._lock:
            uploads, self._uploads = list(self._uploads.values()), {}
        for upload in uploads:
            try:
                with upload.lock:
                    upload.routed.abort()
            except OSError as exc:
                log.warning("could not abort the multipart upload of %s: %s", upload.path, exc)

    def _chosen(self, upload: _Upload, listed: Sequence[Mapping[str, Any]]) -> list[int]:
        """The listed part numbers, checked as S3 checks them: ascending, present, matching, large enough."""
        op = "CompleteMultipartUpload"
        chosen: list[int] = []
        for item in listed:
            number = int(item.get("PartNumber", 0))
            if chosen and number <= chosen[-1]:
                raise self._shape.error("InvalidPartOrder", "The list of parts was not in ascending order. The "
                                        "parts list must be specified in order by part number.", op, 400)
            part = upload.parts.get(number)
            if part is None or str(item.get("ETag", "")).strip('"') != part.etag or (
                    "ChecksumCRC32" in item and item["ChecksumCRC32"] != part.crc32):
                raise self._shape.error("InvalidPart", "One or more of the specified parts could not be found. "
                                        "The part may not have been uploaded, or the specified entity tag may not "
                                        "match the part's entity tag.", op, 400, PartNumber=str(number))
            chosen.append(number)
        for number in chosen[:-1]:
            if upload.parts[number].size < MIN_PART_BYTES:
                raise self._shape.error("EntityTooSmall", "Your proposed upload is smaller than the minimum "
                                        "allowed size", op, 400, PartNumber=str(number),
                                        MinSizeAllowed=str(MIN_PART_BYTES),
                                        ProposedSize=str(upload.parts[number].size))
        return chosen

    def _upload(self, operation: str, params: Mapping[str, Any]) -> _Upload:
        with self._lock:
            upload = self._uploads.get(params["UploadId"])
        if upload is None or upload.bucket != params["Bucket"] or upload.key != params["Key"]:
            raise self._no_such_upload(operation, str(params["UploadId"]))
        return upload

    def _forget(self, upload: _Upload) -> None:
        with self._lock:
            self._uploads.pop(upload.upload_id, None)

    @staticmethod
    def _where(routed: MultipartUpload) -> dict[str, Any]:
        """``ResponseMetadata`` naming where the upload was placed (placement happens at create)."""
        return response_metadata(200, backend_id=routed.decision.backend_id,
                                 GreenrouteDecision=routed.decision.decision_id,
                                 GreenrouteFailovers=list(routed.decision.failovers))

    def _no_such_upload(self, operation: str, upload_id: str) -> Any:
        return self._shape.error("NoSuchUpload", "The specified multipart upload does not exist. The upload ID "
                                 "may be invalid, or the upload may have been aborted or completed.", operation,
                                 404, UploadId=upload_id)


def _read(body: Any) -> bytes:
    """A part's body as bytes (a part is at most 5 GiB; boto3's managed uploads send 8 MiB)."""
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    data = body.read()
    return data if isinstance(data, bytes) else bytes(data)
