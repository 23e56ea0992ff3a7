"""An S3 storage target (``s3://bucket/prefix``), through s3fs.

``storage_options`` go to :class:`s3fs.S3FileSystem` (``endpoint_url``, ``key``, ``secret``,
``client_kwargs``, ``config_kwargs``, ...), plus ``retries``: how many attempts s3fs makes per call
(default 5); when it is set, botocore's own retries default to a single attempt too.

Metadata goes in the same request as the data (``PutObject`` or ``CreateMultipartUpload``).
Non-ASCII values are stored as RFC 2047 encoded words, as S3 itself returns them, and decoded on
reading.

A stream with no size hint learns its values (the carbon of its real size) only at close. While it
has sent nothing, they go up with the bytes in one ``PutObject``. Once it has gone multipart, the
upload was created with the values for size 0 and a marker, ``greenroute_late``, holding a token of
this upload; right after ``CompleteMultipartUpload`` the values that changed go on the object as
object tags (``PutObjectTagging``, on the completed version where the bucket is versioned), with the
same token. Reading (``stat``, ``list``) merges the tags over the metadata of an object that carries
the marker (one ``GetObjectTagging`` for such objects only) when the tokens match, so tags bound for
another upload of the key never describe this object, and callers never see the marker. Where tags
cannot hold the changed values (more than 9, or characters tags refuse), where the metadata has no
room for the marker, where the store does not implement tagging (``NotImplemented``), or with
``storage_options = {"late_metadata": "copy"}``, the values are bound as before with a server-side
copy of the object onto itself (``CopyObject``/``UploadPartCopy``, ``MetadataDirective=REPLACE``).
Tags need ``s3:PutObjectTagging`` to write and ``s3:GetObjectTagging`` to read. A multipart upload
(:meth:`S3Target.open_multipart`) without a hint binds its late values the same way; the boto3
drop-in, which reads S3 objects' metadata from S3 itself, merges the tags too.

A copy within the bucket is one ``CopyObject``: the source's size and ETag are those this target
last saw (a ``stat`` just before, as the router's copy does; else one ``HeadObject``), and the copy
is conditional on that ETag (``CopySourceIfMatch``), so the size reported is the copied object's.
Sources over 5 GiB, which ``CopyObject`` refuses, go through s3fs's multipart copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]
import s3fs  # type: ignore[import-untyped]
from fsspec.asyn import sync  # type: ignore[import-untyped]

from greenroute.errors import ConfigError
from greenroute.model import Backend, Provider
from greenroute.ports import ObjectInfo

from ._fsspec_target import Fault, FsspecTarget, ObjectWriter, Stamp, cloud_filesystem
from ._multipart import PartReader, StagedUpload

__all__ = ["S3Target", "S3Upload", "from_backend"]

_MIN_PART = 5 * 2**20
_UNAVAILABLE_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                                "RequestTimeTooSkewed"})
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                           "AllAccessDisabled", "AccountProblem"})
#: The metadata key marking an object whose late values are in its tags; its value is the upload's token.
LATE_KEY = "greenroute_late"
_LATE_MODES = ("tags", "copy")
#: S3's limits for one object's tags (the token's tag included).
_MAX_TAGS = 10
_TAG_KEY_CHARS = 128
_TAG_VALUE_CHARS = 256
#: What S3 accepts in tag keys and values, kept to ASCII (letters, digits, spaces and + - = . _ : / @).
_TAG_TEXT = re.compile(r"^[A-Za-z0-9 +\-=._:/@]*$")
#: The largest source a single CopyObject takes.
_MAX_COPY_OBJECT = 5 * 2**30
#: How many objects' (ETag, size) a target remembers for its copies.
_KNOWN_OBJECTS = 4096


class _S3FileSystem(s3fs.S3FileSystem):  # type: ignore[misc]
    """s3fs with a per-instance number of attempts (``retries``); ``late_metadata`` is the target's."""

    def __init__(self, *args: Any, retries: int | None = None, late_metadata: str | None = None,
                 **kwargs: Any) -> None:
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
        mode = backend.storage_options.get("late_metadata", "tags")
        if mode not in _LATE_MODES:
            raise ConfigError(f"late_metadata must be tags or copy, got {mode!r}",
                              key=f"backends.{backend.id}.storage_options.late_metadata")
        #: How a stream's values known only at close reach a multipart object: ``tags`` or ``copy``.
        self.late_metadata: str = mode
        self._known: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._known_lock = threading.Lock()
        super().__init__(backend, *cloud_filesystem(backend, ("s3", "s3a"), _S3FileSystem))

    # -- writes -----------------------------------------------------------------------------------

    def open_write(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                   *, block_size: int | None = None, size_hint: int | None = None) -> ObjectWriter:
        if size_hint is not None:
            return super().open_write(path, metadata_at_close, block_size=block_size, size_hint=size_hint)
        # The upload is created with the values for size 0 (so it names its decision from the start)
        # and the marker that sends readers to the tags bound at close.
        upfront = self._provisional(self._prepare_metadata(dict(metadata_at_close(0))))
        return self._writer(path, metadata_at_close, block_size, upfront)

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
        # autocommit off: close() sends the last part and leaves the upload open, so that
        # _commit_started completes it and has CompleteMultipartUpload's ETag and VersionId. s3fs's
        # _open, not open(), which would also file the stream in an fsspec transaction for good.
        return self.fs._open(full, "wb", block_size=max(block_size or self.fs.default_block_size, _MIN_PART),
                             autocommit=False, **extra)

    def _commit_started(self, inner: Any, full: str, metadata: dict[str, str],
                        upfront: dict[str, str] | None) -> Stamp:
        inner.close()  # sends the last part; the upload, created with ``upfront``, stays open
        bucket, key, _ = self.fs.split_path(full)
        out = self.fs.call_s3("complete_multipart_upload", Bucket=bucket, Key=key, UploadId=inner.mpu["UploadId"],
                              MultipartUpload={"Parts": inner.parts})
        inner.mpu = None  # completed: nothing is left to abort
        self.fs.invalidate_cache(full)
        etag = self._etag(out)
        rebound = self._bind_metadata_after_upload(full, metadata, upfront or {}, out.get("VersionId"))
        return rebound or etag, None

    def _bind_metadata_after_upload(self, full: str, metadata: dict[str, str], upfront: dict[str, str],
                                    version_id: str | None = None) -> str | None:
        """Give a completed multipart object (created with ``upfront``) ``metadata``; its new ETag, if it changed.

        The changed values go on as tags when ``upfront`` carries the marker and tags can hold them,
        else (or where the store has no tagging) the object is copied onto itself with ``metadata``.
        If that fails, the object is removed: it never stays behind with the wrong values.
        """
        if _unmarked(upfront) == metadata:
            return None
        tags = _late_tags(metadata, upfront)
        if tags is not None:
            try:
                self._tag(full, tags, {"VersionId": version_id} if version_id else {})
            except BaseException as exc:
                if not (isinstance(exc, Exception) and _not_implemented(exc)):  # else: copy, below
                    with contextlib.suppress(Exception):
                        self.fs.rm_file(full)
                    raise
            else:
                return None
        self._after_commit(full, lambda: self.fs.cp_file(full, full, Metadata=metadata, MetadataDirective="REPLACE"))
        return self._etag(self._head(full))

    def _tag(self, full: str, tags: Mapping[str, str], version: Mapping[str, str]) -> None:
        bucket, key, _ = self.fs.split_path(full)
        self.fs.call_s3("put_object_tagging", Bucket=bucket, Key=key, **version,
                        Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})

    def _provisional(self, stored: dict[str, str]) -> dict[str, str]:
        """``stored`` with the late-values marker (a fresh token), when tags bind late values and it fits."""
        if self.late_metadata != "tags":
            return stored
        marked = {**stored, LATE_KEY: secrets.token_hex(6)}
        size = sum(len(k.encode()) + len(v.encode()) for k, v in marked.items())
        return marked if self.max_metadata_bytes is None or size <= self.max_metadata_bytes else stored

    # -- reads --------------------------------------------------------------------------------------

    def _head(self, full: str) -> Mapping[str, Any]:
        """``HeadObject`` of ``full`` (remembered for :meth:`copy`)."""
        bucket, key, _ = self.fs.split_path(full)
        head: Mapping[str, Any] = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        self._remember(full, head.get("ETag"), head.get("ContentLength"))
        return head

    def _stat(self, full: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        head = self._head(full)
        info = {"size": head.get("ContentLength", 0), "ETag": head.get("ETag"),
                "LastModified": head.get("LastModified"), "type": "file"}
        raw = dict(head.get("Metadata") or {})
        if LATE_KEY in raw:
            bucket, key, _ = self.fs.split_path(full)
            raw = _merge_late(raw, self.fs.call_s3("get_object_tagging", Bucket=bucket, Key=key,
                                                   **_version_of(head)))
        return info, raw

    def _raw_metadata(self, full: str, info: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._stat(full)[1]

    def _list_metadata(self, entries: list[tuple[str, Mapping[str, Any]]]) -> list[Mapping[str, Any] | None]:
        async def head(name: str) -> Any:
            bucket, key, _ = self.fs.split_path(name)
            return await self.fs._call_s3("head_object", Bucket=bucket, Key=key)

        async def tags(name: str, found: Mapping[str, Any]) -> Any:
            bucket, key, _ = self.fs.split_path(name)
            return await self.fs._call_s3("get_object_tagging", Bucket=bucket, Key=key, **_version_of(found))

        async def heads() -> list[Any]:
            return await asyncio.gather(*(head(name) for name, _ in entries), return_exceptions=True)

        async def taggings(late: list[tuple[str, Mapping[str, Any]]]) -> list[Any]:
            return await asyncio.gather(*(tags(name, found) for name, found in late), return_exceptions=True)

        out: list[Mapping[str, Any] | None] = []
        for result in sync(self.fs.loop, heads):
            if isinstance(result, FileNotFoundError):
                out.append(None)
            elif isinstance(result, BaseException):
                raise result
            else:
                out.append(dict(result.get("Metadata") or {}))
        # Only objects that carry the marker cost a second request.
        late = [i for i, raw in enumerate(out) if raw is not None and LATE_KEY in raw]
        if late:
            names = [(entries[i][0], out[i] or {}) for i in late]
            for i, result in zip(late, sync(self.fs.loop, taggings, names), strict=True):
                if isinstance(result, FileNotFoundError):
                    out[i] = None
                elif isinstance(result, BaseException):
                    raise result
                else:
                    out[i] = _merge_late(dict(out[i] or {}), result)
        return out

    # -- deletes and copies ---------------------------------------------------------------------------

    def _delete(self, full: str) -> None:
        self._head(full)  # S3 deletes a missing key without complaint
        self._forget(full)
        self.fs.rm_file(full)

    def _delete_if_unchanged(self, full: str, info: Mapping[str, Any]) -> bool:
        bucket, key, _ = self.fs.split_path(full)
        self._forget(full)
        return self._delete_checked(  # S3 checks the ETag
            full, lambda: self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=info["ETag"]),
            lambda exc: isinstance(exc, OSError) and _precondition_failed(exc))

    def copy(self, src: str, dst: str, metadata: Mapping[str, str]) -> ObjectInfo:
        """One ``CopyObject``, conditional on the source's ETag as last seen (see the module's docstring)."""
        stored = self._prepare_metadata(metadata)
        source, target = self._full(src), self._full(dst)
        with self._errors("copy", src):
            known = self._recall(source)
            for attempt in range(2):
                if known is None:
                    head = self._head(source)
                    known = (str(head.get("ETag")), int(head.get("ContentLength") or 0))
                etag, size = known
                if size > _MAX_COPY_OBJECT:
                    self._copy(source, target, stored)
                    break
                try:
                    out = self._copy_object(source, target, stored, etag)
                except Exception as exc:
                    if attempt or not _precondition_failed(exc):
                        raise
                    known = None  # the source changed since it was seen: look again, once
                    continue
                result = out.get("CopyObjectResult") or {}
                self._remember(target, result.get("ETag"), size)
                return ObjectInfo(dst, self.url(dst), size, self._etag(result), dict(metadata),
                                  self._modified(target, result))
        return self.stat(dst)

    def _copy_object(self, source: str, target: str, metadata: dict[str, str], etag: str) -> Any:
        src_bucket, src_key, _ = self.fs.split_path(source)
        bucket, key, _ = self.fs.split_path(target)
        try:
            return self.fs.call_s3("copy_object", Bucket=bucket, Key=key,
                                   CopySource={"Bucket": src_bucket, "Key": src_key}, CopySourceIfMatch=etag,
                                   Metadata=metadata, MetadataDirective="REPLACE")
        finally:
            self.fs.invalidate_cache(target)

    def _copy(self, source: str, target: str, metadata: dict[str, str]) -> None:
        self.fs.cp_file(source, target, Metadata=metadata, MetadataDirective="REPLACE")

    def _remember(self, full: str, etag: Any, size: Any) -> None:
        """Keep ``full``'s ETag and size for a copy soon after (the oldest are dropped)."""
        if not etag or size is None:
            return
        with self._known_lock:
            self._known[full] = (str(etag), int(size))
            self._known.move_to_end(full)
            while len(self._known) > _KNOWN_OBJECTS:
                self._known.popitem(last=False)

    def _recall(self, full: str) -> tuple[str, int] | None:
        with self._known_lock:
            return self._known.get(full)

    def _forget(self, full: str) -> None:
        with self._known_lock:
            self._known.pop(full, None)

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


def _unmarked(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in metadata.items() if k != LATE_KEY}


def _late_tags(metadata: Mapping[str, str], upfront: Mapping[str, str]) -> dict[str, str] | None:
    """The tags that bind ``metadata`` on an object created with ``upfront``, or ``None`` if tags cannot.

    They are the values that changed plus the upload's token; tags cannot add or drop keys, and
    hold at most 10 pairs of 128/256 characters from a restricted set.
    """
    token = upfront.get(LATE_KEY)
    before = _unmarked(upfront)
    if token is None or set(before) != set(metadata):
        return None
    tags = {k: v for k, v in metadata.items() if before[k] != v}
    tags[LATE_KEY] = token
    if len(tags) > _MAX_TAGS or not all(
            len(k) <= _TAG_KEY_CHARS and len(v) <= _TAG_VALUE_CHARS and _TAG_TEXT.match(k) and _TAG_TEXT.match(v)
            for k, v in tags.items()):
        return None
    return tags


def _merge_late(raw: dict[str, Any], tagging: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` metadata (with the marker) with the values of its upload's tags, and without the marker.

    Tags carrying another token (bound for another upload of the key) are ignored.
    """
    token = raw.pop(LATE_KEY, None)
    tags = {str(t.get("Key")): str(t.get("Value")) for t in tagging.get("TagSet") or []}
    if token is not None and tags.pop(LATE_KEY, None) == token:
        raw.update({k: v for k, v in tags.items() if k in raw})
    return raw


def _version_of(head: Mapping[str, Any]) -> dict[str, str]:
    """``VersionId`` of the object ``head`` describes, for a request that must read that version."""
    version = head.get("VersionId")
    return {"VersionId": str(version)} if version and version != "null" else {}


def _not_implemented(exc: BaseException) -> bool:
    """Whether S3 answered that it does not implement a request (tagging on some S3-compatible stores)."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, botocore.exceptions.ClientError):
            response = current.response
            return (str(response.get("Error", {}).get("Code", "")) in {"NotImplemented", "501"}
                    or int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) == 501)
        current = current.__cause__ or current.__context__
    return False


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
    for ``size_hint`` (the upload begins at once), or, without a hint, for the first part's size and
    the late-values marker (the upload begins with the first part). If the completed object's size
    gives other values, they are bound after completion as a stream's are
    (:meth:`S3Target._bind_metadata_after_upload`: tags, or a copy where tags cannot hold them).
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
        upload_id = self._upload_id or self._begin(  # an estimate: marked, so the real values can follow as tags
            self._s3._provisional(self._s3._prepare_metadata(dict(self._metadata_at_close(len(data))))))
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
        rebound = self._s3._bind_metadata_after_upload(self._full, stored, self._upfront, out.get("VersionId"))
        return rebound or etag, None

    def _drop(self) -> None:
        if self._upload_id is not None:
            self._s3.fs.call_s3("abort_multipart_upload", Bucket=self._bucket, Key=self._key,
                                UploadId=self._upload_id)

    def _discard_staged(self) -> None:
        """Nothing: S3 drops the parts itself when the upload completes."""


def from_backend(backend: Backend) -> S3Target:
    """The ``greenroute.targets`` entry point for ``provider = "s3"``."""
    return S3Target(backend)
