"""Multipart uploads of :class:`~greenroute.adapters.boto3.client.GreenS3Client`, spooled locally.

Parts are spooled as they arrive (in any order, from any thread; small parts in memory, larger ones
in temporary files) with their MD5 ETag and CRC32. ``complete_multipart_upload`` checks the listed
parts as S3 does and hands them to the router as one seekable stream, so placement, metadata and
the carbon estimate use the real size and a failed backend can be failed over.
``abort_multipart_upload`` leaves nothing behind. Uploads live in one client object, so one upload
cannot be shared between processes.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import io
import tempfile
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, cast

from greenroute.router import GreenRouter

from ._shaping import (
    COPY_CHUNK,
    Shaper,
    quote_etag,
    response_metadata,
    user_metadata,
    write_response,
)

__all__ = ["PartsReader", "Uploads", "spooler"]

#: S3's smallest part, except the last one.
MIN_PART_BYTES = 5 * 2**20
MAX_PARTS = 10_000


def spooler(directory: str | None, memory_bytes: int) -> Callable[[], IO[bytes]]:
    """A factory of spools: in memory up to ``memory_bytes``, then a temporary file in ``directory``."""

    def spool() -> IO[bytes]:
        return cast(IO[bytes], tempfile.SpooledTemporaryFile(max_size=memory_bytes, dir=directory))

    return spool


class PartsReader(io.RawIOBase):
    """The parts of a multipart upload, read as one seekable stream (so a write can fail over)."""

    def __init__(self, parts: Sequence[IO[bytes]], sizes: Sequence[int]) -> None:
        super().__init__()
        self._parts = list(parts)
        self._sizes = list(sizes)
        self._starts: list[int] = []
        total = 0
        for size in self._sizes:
            self._starts.append(total)
            total += size
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        view = memoryview(buffer).cast("B")
        index = bisect.bisect_right(self._starts, self._pos) - 1
        offset = self._pos - self._starts[index]
        part = self._parts[index]
        part.seek(offset)
        data = part.read(min(view.nbytes, self._sizes[index] - offset))
        view[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


@dataclass
class _Part:
    spool: IO[bytes]
    size: int
    etag: str
    crc32: str


@dataclass
class _Upload:
    """One multipart upload in progress: its target path, the caller's metadata, and its spooled parts."""

    upload_id: str
    bucket: str
    key: str
    path: str
    metadata: dict[str, str]
    parts: dict[int, _Part] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def discard(self) -> None:
        self.closed = True
        for part in self.parts.values():
            part.spool.close()
        self.parts.clear()


class Uploads:
    """The multipart uploads in progress on one client; each method takes already-checked parameters.

    Args:
        router: Where completed uploads are written.
        shaper: Builds the S3 errors.
        spool: Makes a spool for one part.
        emit: Emits ``request-created`` for an operation and its body (s3transfer's progress hooks).
    """

    def __init__(self, router: GreenRouter, shaper: Shaper, spool: Callable[[], IO[bytes]],
                 emit: Callable[[str, Any], None]) -> None:
        self._router = router
        self._shape = shaper
        self._spool = spool
        self._emit = emit
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()

    def create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Begin an upload (``CreateMultipartUpload``); nothing is placed or recorded yet."""
        bucket, key = params["Bucket"], params["Key"]
        path = self._shape.write_path("CreateMultipartUpload", bucket, key)
        upload = _Upload(uuid.uuid4().hex, bucket, key, path, user_metadata(params.get("Metadata")))
        with self._lock:
            self._uploads[upload.upload_id] = upload
        response = {"Bucket": bucket, "Key": key, "UploadId": upload.upload_id,
                    "ResponseMetadata": response_metadata(200)}
        if "ChecksumAlgorithm" in params:
            response["ChecksumAlgorithm"] = params["ChecksumAlgorithm"]
        return response

    def upload_part(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Spool one part (``UploadPart``); re-uploading a part number replaces it."""
        upload = self._upload("UploadPart", params)
        number = int(params["PartNumber"])
        if not 1 <= number <= MAX_PARTS:
            raise self._shape.error("InvalidArgument", f"Part number must be an integer between 1 and {MAX_PARTS}, "
                                    "inclusive", "UploadPart", 400, ArgumentName="partNumber",
                                    ArgumentValue=str(number))
        body = params.get("Body")
        self._emit("UploadPart", body)
        spool = self._spool()
        md5, crc, size = hashlib.md5(usedforsecurity=False), 0, 0
        try:
            if isinstance(body, str):
                body = body.encode()
            chunks: Iterator[bytes] = (iter([bytes(body)]) if isinstance(body, bytes | bytearray | memoryview)
                                       else iter(lambda: body.read(COPY_CHUNK), b"") if body is not None
                                       else iter([]))
            for chunk in chunks:
                spool.write(chunk)
                md5.update(chunk)
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
        except BaseException:
            spool.close()
            raise
        part = _Part(spool, size, md5.hexdigest(), base64.b64encode(crc.to_bytes(4, "big")).decode())
        with upload.lock:
            if upload.closed:
                spool.close()
                raise self._no_such_upload("UploadPart", upload.upload_id)
            previous = upload.parts.get(number)
            upload.parts[number] = part
        if previous is not None:
            previous.spool.close()
        response: dict[str, Any] = {"ETag": quote_etag(part.etag), "ResponseMetadata": response_metadata(200)}
        if str(params.get("ChecksumAlgorithm", "")).upper() == "CRC32":
            response["ChecksumCRC32"] = part.crc32
        return response

    def complete(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Hand the listed parts to the router as one object (``CompleteMultipartUpload``)."""
        op = "CompleteMultipartUpload"
        upload = self._upload(op, params)
        listed = list((params.get("MultipartUpload") or {}).get("Parts") or [])
        if not listed:
            raise self._shape.error("MalformedXML", "The XML you provided was not well-formed or did not validate "
                                    "against our published schema", op, 400)
        with upload.lock:
            if upload.closed:
                raise self._no_such_upload(op, upload.upload_id)
            chosen = self._chosen(upload, listed)
            reader = PartsReader([p.spool for p in chosen], [p.size for p in chosen])
            with self._shape.errors(op, upload.key, missing="NoSuchBucket"):
                result = self._router.write(upload.path, cast(IO[bytes], reader), metadata=upload.metadata,
                                            size_hint=sum(p.size for p in chosen))
            with self._lock:
                self._uploads.pop(upload.upload_id, None)
            upload.discard()
        return write_response(result, Location=result.url, Bucket=upload.bucket, Key=upload.key)

    def abort(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Drop an upload and its parts (``AbortMultipartUpload``); nothing was placed or recorded."""
        upload = self._upload("AbortMultipartUpload", params)
        with self._lock:
            self._uploads.pop(upload.upload_id, None)
        with upload.lock:
            upload.discard()
        return {"ResponseMetadata": response_metadata(204)}

    def close(self) -> None:
        """Discard every upload in progress."""
        with self._lock:
            uploads, self._uploads = list(self._uploads.values()), {}
        for upload in uploads:
            with upload.lock:
                upload.discard()

    def _chosen(self, upload: _Upload, listed: Sequence[Mapping[str, Any]]) -> list[_Part]:
        """The listed parts, checked as S3 checks them: ascending, present, matching, large enough."""
        op = "CompleteMultipartUpload"
        chosen: list[_Part] = []
        previous = 0
        for item in listed:
            number = int(item.get("PartNumber", 0))
            if number <= previous:
                raise self._shape.error("InvalidPartOrder", "The list of parts was not in ascending order. The "
                                        "parts list must be specified in order by part number.", op, 400)
            previous = number
            part = upload.parts.get(number)
            if part is None or str(item.get("ETag", "")).strip('"') != part.etag or (
                    "ChecksumCRC32" in item and item["ChecksumCRC32"] != part.crc32):
                raise self._shape.error("InvalidPart", "One or more of the specified parts could not be found. "
                                        "The part may not have been uploaded, or the specified entity tag may not "
                                        "match the part's entity tag.", op, 400, PartNumber=str(number))
            chosen.append(part)
        for number, part in zip((int(i["PartNumber"]) for i in listed[:-1]), chosen[:-1], strict=True):
            if part.size < MIN_PART_BYTES:
                raise self._shape.error("EntityTooSmall", "Your proposed upload is smaller than the minimum "
                                        "allowed size", op, 400, PartNumber=str(number),
                                        MinSizeAllowed=str(MIN_PART_BYTES), ProposedSize=str(part.size))
        return chosen

    def _upload(self, operation: str, params: Mapping[str, Any]) -> _Upload:
        with self._lock:
            upload = self._uploads.get(params["UploadId"])
        if upload is None or upload.bucket != params["Bucket"] or upload.key != params["Key"]:
            raise self._no_such_upload(operation, str(params["UploadId"]))
        return upload

    def _no_such_upload(self, operation: str, upload_id: str) -> Any:
        return self._shape.error("NoSuchUpload", "The specified multipart upload does not exist. The upload ID "
                                 "may be invalid, or the upload may have been aborted or completed.", operation,
                                 404, UploadId=upload_id)
