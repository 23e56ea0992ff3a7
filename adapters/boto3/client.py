"""A drop-in for ``boto3.client("s3")`` whose writes are carbon-aware: :class:`GreenS3Client`.

Existing code changes one line::

    s3 = greenroute.boto3_client(config="greenroute.toml")   # was: boto3.client("s3")
    s3.put_object(Bucket="reports", Key="2026/q3.parquet", Body=data)

``Bucket`` is a logical namespace: the object's logical path is ``f"{Bucket}/{Key}"``. Every write
goes through :class:`greenroute.GreenRouter`, which places it on the greenest eligible backend,
records it in the catalog in two phases, fails over, and stamps greenroute's metadata on it. Reads,
listings and deletes find the object again through the catalog. Responses have boto3's shapes and
types; ``ResponseMetadata`` also names the backend (``GreenrouteBackend``) and the physical
location (``GreenrouteLocation``). Errors are :class:`botocore.exceptions.ClientError` (the
modelled subclasses, such as ``s3.exceptions.NoSuchKey``, where S3 has one), with greenroute's
own error as ``__cause__``.

How each call is served:

* S3 backends get one real boto3 client each, built from the backend's ``storage_options``
  (``endpoint_url``, ``key``/``secret`` or ``aws_access_key_id``/``aws_secret_access_key``, the
  region from ``client_kwargs.region_name``, ``region_name`` or the backend's region). Reads of an
  object on an S3 backend (``get_object``, ``head_object``, presigned URLs) go to its physical
  object through that client, so ``Range``, conditional headers and the ``StreamingBody`` are
  boto3's own.
* GCS and Azure backends are read through greenroute's storage targets, the same adapters the
  router writes with; their responses are shaped the same way (``Range``, ``IfMatch`` and
  ``IfNoneMatch`` included). Presigned URLs exist only for objects on S3 backends.
* Any method that is not routed (``list_buckets``, ``get_bucket_location``, ``put_object_tagging``,
  ...) passes straight through to a plain boto3 client for the default backend, with its arguments
  unchanged: there a ``Bucket`` is a physical bucket, not a logical namespace.

The wrapper is a composition: it never patches boto3. boto3's managed transfers
(``upload_file``, ``upload_fileobj``, ``download_file``, ``download_fileobj``) are boto3's own
functions run against this client, so their ``TransferConfig``, ``Callback`` and error behaviour
are unchanged, and their ``put_object``, multipart and ranged ``get_object`` calls are routed.
The transfer manager's progress hooks are registered on this client's own event emitter
(``meta.events``), which emits ``request-created.s3.PutObject`` and ``...UploadPart``.

A multipart upload is spooled locally (part by part, in any order and from any thread) and
handed to the router as one object on ``complete_multipart_upload``: placement, metadata and
the carbon estimate use the real size, the catalog entry commits only then, and
``abort_multipart_upload`` leaves nothing behind. Uploads live in this client object, so one
upload cannot be shared between processes.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import copy as python_copy
import functools
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, NoReturn, cast
from urllib.parse import quote_plus

import boto3.s3.inject  # type: ignore[import-untyped]
import boto3.session  # type: ignore[import-untyped]
import botocore  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
import botocore.hooks  # type: ignore[import-untyped]
import botocore.loaders  # type: ignore[import-untyped]
import botocore.paginate  # type: ignore[import-untyped]
import botocore.response  # type: ignore[import-untyped]
import botocore.validate  # type: ignore[import-untyped]
import botocore.waiter  # type: ignore[import-untyped]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

from greenroute.config import GreenrouteConfig
from greenroute.errors import (
    AllBackendsFailedError,
    ConfigError,
    InvalidPathError,
    MetadataNotSupportedError,
    NoEligibleBackendError,
    TargetUnavailableError,
)
from greenroute.model import Backend, CatalogEntry, Provider, utcnow
from greenroute.router import GreenRouter, WriteResult, validate_path

from ..storage._fsspec_target import canonical_metadata, split_root

__all__ = ["GreenS3Client"]

log = logging.getLogger(__name__)

_MIB = 2**20
#: S3's smallest part, except the last one.
_MIN_PART_BYTES = 5 * _MIB
_MAX_PARTS = 10_000
_MAX_DELETE_KEYS = 1000
_MAX_LIST_KEYS = 1000
_COPY_CHUNK = _MIB
#: botocore's own client-side rule for bucket names (``botocore.handlers.VALID_BUCKET``); ARNs are
#: physical, so they are not logical namespaces.
_BUCKET = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_DEFAULT_CONTENT_TYPE = "binary/octet-stream"
#: Parameters greenroute cannot honour on every backend and that change who may read an object,
#: how it is encrypted, or which version is meant: refused (``NotImplemented``), never dropped.
_REFUSED = frozenset({
    "GrantFullControl", "GrantRead", "GrantReadACP", "GrantWriteACP",
    "SSECustomerAlgorithm", "SSECustomerKey", "SSECustomerKeyMD5", "SSEKMSKeyId", "SSEKMSEncryptionContext",
    "CopySourceSSECustomerAlgorithm", "CopySourceSSECustomerKey", "CopySourceSSECustomerKeyMD5",
    "ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus", "WebsiteRedirectLocation",
    "WriteOffsetBytes", "VersionId", "CopySourceIfMatch", "CopySourceIfNoneMatch",
    "CopySourceIfModifiedSince", "CopySourceIfUnmodifiedSince",
})
#: Conditional writes (the router has no compare-and-swap) and reads of one part of a physical
#: multipart upload (the physical parts are not the caller's): refused.
_REFUSED_ON_WRITE = frozenset({"IfMatch", "IfNoneMatch"})
_REFUSED_ON_READ = frozenset({"PartNumber"})
#: Values of otherwise refused parameters that are what S3 does anyway.
_HARMLESS = {"ACL": "private", "ServerSideEncryption": "AES256"}
#: Methods whose presigned URL would bypass placement and the catalog.
_UNSIGNABLE = frozenset({
    "put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload",
    "abort_multipart_upload", "copy_object", "delete_object", "delete_objects", "list_objects_v2",
    "upload_part_copy",
})
_OBJECT_WAITERS = ("bucket_exists", "bucket_not_exists", "object_exists", "object_not_exists")


@functools.cache
def _s3_model(kind: str) -> dict[str, Any]:
    """botocore's S3 paginator (``paginators-1``) or waiter (``waiters-2``) definitions."""
    loaded: dict[str, Any] = botocore.loaders.create_loader().load_service_model("s3", kind)
    return loaded


def _quote_etag(etag: str | None) -> str:
    return f'"{etag.strip(chr(34))}"' if etag else '""'


def _response_metadata(status: int, *, backend_id: str | None = None, location: str | None = None,
                       **extra: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"RequestId": uuid.uuid4().hex[:16].upper(), "HostId": "", "HTTPStatusCode": status,
                          "HTTPHeaders": {}, "RetryAttempts": 0}
    if backend_id is not None:
        md["GreenrouteBackend"] = backend_id
    if location is not None:
        md["GreenrouteLocation"] = location
    md.update(extra)
    return md


def _write_metadata(result: WriteResult, status: int = 200) -> dict[str, Any]:
    return _response_metadata(status, backend_id=result.backend_id, location=result.url,
                              GreenrouteDecision=result.decision.decision_id,
                              GreenrouteWriteGco2e=result.write_gco2e, GreenrouteGco2eMonth=result.gco2e_month,
                              GreenrouteFailovers=list(result.failovers))


def _classic(config: Any) -> Any:
    """A copy of ``config`` that keeps boto3's Python transfer manager (the CRT one would bypass us)."""
    chosen = python_copy.copy(config) if config is not None else TransferConfig()
    chosen.preferred_transfer_client = "classic"
    return chosen


# -- streams ------------------------------------------------------------------------------------


class _BodyAdapter(io.RawIOBase):
    """A seekable view of a caller's file-like body that lacks ``seekable()`` (s3transfer's chunks)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(view.nbytes)
        view[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._inner.seek(offset, whence)
        return int(self._inner.tell())

    def tell(self) -> int:
        return int(self._inner.tell())

    def close(self) -> None:  # the caller owns the body
        super().close()


class _PartsReader(io.RawIOBase):
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


class _RangeReader(io.RawIOBase):
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


@dataclass(frozen=True, slots=True)
class _RoutedRequest:
    """What ``request-created`` handlers see of a routed call: its body (s3transfer signals on it)."""

    body: Any
    method: str = "PUT"
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


class _ClientMeta:
    """The client's ``meta``: its own event emitter; the model, config and region of the default client."""

    def __init__(self, inner: Any) -> None:
        self.events = botocore.hooks.HierarchicalEmitter()
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


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


# -- the client ---------------------------------------------------------------------------------


class GreenS3Client:
    """A boto3 S3 client whose buckets are logical namespaces placed by greenroute.

    Routed methods: ``put_object``, ``upload_file``, ``upload_fileobj``, ``create_multipart_upload``,
    ``upload_part``, ``complete_multipart_upload``, ``abort_multipart_upload``, ``copy_object``,
    ``copy``, ``get_object``, ``head_object``, ``download_file``, ``download_fileobj``,
    ``delete_object``, ``delete_objects``, ``list_objects_v2`` (and ``get_paginator("list_objects_v2")``),
    ``head_bucket``, ``get_waiter`` (object and bucket waiters) and ``generate_presigned_url``
    (``get_object``/``head_object`` of an object on an S3 backend). Writes go through the router:
    placement, two-phase catalog writes, failover and metadata stamping. Reads and listings go
    through the catalog.

    **Any other method passes through unchanged** (via ``__getattr__``) to a plain boto3 client for
    the default backend: the best-scoring S3 backend, or ``default_backend``. There ``Bucket`` names
    a physical bucket. With no S3 backend configured, the pass-through client is a plain
    ``boto3.client("s3")`` from the environment. ``meta`` is this client's own (its events are its
    own; its model, config and region are the default client's) and ``exceptions`` are the default
    client's, so ``except s3.exceptions.NoSuchKey`` works.

    What S3 does that greenroute does not:

    * Keys that are not valid logical path segments (``a//b``, ``dir/``, ``../x``) and metadata keys
      that are not lowercase identifiers (S3 lowercases keys; ``-`` is refused, since Azure rejects
      it) are refused on writes with ``InvalidArgument``. Reading such a key is ``NoSuchKey``.
      ``greenroute_*`` keys in a caller's ``Metadata`` are replaced by greenroute's own.
    * ACLs other than ``private``, SSE-C and SSE-KMS, object lock, versions, conditional writes and
      ``PartNumber`` reads are refused with ``NotImplemented`` (501). Presentation headers
      (``ContentType``, ``CacheControl``, ...), ``StorageClass``, ``Tagging`` and checksums are
      accepted and not stored: the router's targets store bytes and metadata only.
    * A logical bucket exists as soon as it is named: ``head_bucket`` succeeds and an empty
      namespace lists as empty.
    * A multipart upload's bytes go to the backend on ``complete_multipart_upload``, so a managed
      upload's ``Callback`` reports parts as they are spooled, before the backend has them.

    As on S3, ``get_object`` of a missing key fails with ``NoSuchKey`` and ``head_object`` with a
    bare ``404`` (HEAD has no error body); ``delete_object`` of a missing key succeeds.

    Args:
        router: The router that places, records and finds objects.
        default_backend: The S3 backend whose client serves pass-through calls (default: the
            best-scoring S3 backend now).
        session: The boto3 session that builds the real clients (default: a new one).
        client_config: A ``botocore.config.Config`` merged into every real client's configuration.
        spool_dir: Where multipart parts are spooled (default: the system's temporary directory).
        spool_memory_bytes: Parts up to this size stay in memory.
        owns_router: Whether :meth:`close` also closes ``router``.

    Raises:
        ConfigError: ``default_backend`` is not a configured S3 backend.

    Example:
        >>> from greenroute import GreenPlacementService, GreenRouter
        >>> from greenroute.adapters.catalog.sqlite import SqliteCatalog
        >>> from greenroute.profiles import default_backends
        >>> router = GreenRouter(GreenPlacementService(default_backends()), SqliteCatalog(":memory:"))
        >>> s3 = GreenS3Client(router, owns_router=True)
        >>> put = s3.put_object(Bucket="reports", Key="2026/q3.csv", Body=b"region,gco2e\\n")
        >>> put["ResponseMetadata"]["GreenrouteBackend"]
        'aws-eu-north-1'
        >>> got = s3.get_object(Bucket="reports", Key="2026/q3.csv")
        >>> got["Body"].read(), got["Metadata"]["greenroute_path"]
        (b'region,gco2e\\n', 'reports/2026/q3.csv')
        >>> s3.close()
    """

    def __init__(self, router: GreenRouter, *, default_backend: str | None = None, session: Any = None,
                 client_config: Any = None, spool_dir: str | os.PathLike[str] | None = None,
                 spool_memory_bytes: int = _MIB, owns_router: bool = False) -> None:
        self.router = router
        self._owns_router = owns_router
        self._session = session if session is not None else boto3.session.Session()
        self._client_config = client_config
        self._spool_dir = os.fspath(spool_dir) if spool_dir is not None else None
        self._spool_memory_bytes = spool_memory_bytes
        self._uploads: dict[str, _Upload] = {}
        self._uploads_lock = threading.Lock()
        s3_backends = [b for b in router.placement.backends if b.provider is Provider.S3]
        if default_backend is not None and default_backend not in {b.id for b in s3_backends}:
            raise ConfigError(f"{default_backend!r} is not a configured S3 backend", key="default_backend")
        self._clients: dict[str, Any] = {}
        try:
            for backend in s3_backends:
                self._clients[backend.id] = self._build_client(backend)
            self.default_backend_id: str | None = default_backend or self._best_s3(s3_backends)
            self._default: Any = (self._clients[self.default_backend_id] if self.default_backend_id is not None
                                  else self._session.client("s3", config=client_config))
        except BaseException:
            for client in self._clients.values():
                client.close()
            raise
        self.meta = _ClientMeta(self._default.meta)

    @classmethod
    def from_config(cls, config: str | os.PathLike[str] | GreenrouteConfig | None = None,
                    **kwargs: Any) -> GreenS3Client:
        """A client over the router for the configuration at ``config``.

        Args:
            config: A config file or a loaded config (default: ``$GREENROUTE_CONFIG``, then
                ``./greenroute.toml``, then the pre-registered profiles).
            **kwargs: Passed to the constructor (``default_backend``, ``session``, ...).
        """
        router = GreenRouter.from_config(config)
        try:
            return cls(router, owns_router=True, **kwargs)
        except BaseException:
            router.close()
            raise

    # -- plumbing -------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        default = self.__dict__.get("_default")
        if default is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(default, name)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.__dict__.get("_default"))))

    def __repr__(self) -> str:
        return f"GreenS3Client(backends={[b.id for b in self.router.placement.backends]!r}, " \
               f"default={self.default_backend_id!r})"

    def __enter__(self) -> GreenS3Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Discard multipart uploads in progress, close the real clients and (if owned) the router."""
        with self._uploads_lock:
            uploads, self._uploads = list(self._uploads.values()), {}
        for upload in uploads:
            with upload.lock:
                upload.discard()
        for client in self._clients.values():
            client.close()
        if self.default_backend_id is None:
            self._default.close()
        if self._owns_router:
            self.router.close()

    def physical_client(self, backend_id: str) -> Any:
        """The real boto3 client of an S3 backend.

        Raises:
            KeyError: No S3 backend has that id.
        """
        return self._clients[backend_id]

    def _build_client(self, backend: Backend) -> Any:
        options = dict(backend.storage_options)
        client_kwargs = dict(options.get("client_kwargs") or {})
        endpoint = options.get("endpoint_url") or client_kwargs.pop("endpoint_url", None)
        region = (client_kwargs.pop("region_name", None) or options.get("region_name") or options.get("region")
                  or backend.region)
        key = options.get("key") or options.get("aws_access_key_id") or client_kwargs.pop("aws_access_key_id", None)
        secret = (options.get("secret") or options.get("aws_secret_access_key")
                  or client_kwargs.pop("aws_secret_access_key", None))
        token = (options.get("token") or options.get("aws_session_token")
                 or client_kwargs.pop("aws_session_token", None))
        config_kwargs = dict(options.get("config_kwargs") or {})
        if options.get("anon"):
            config_kwargs["signature_version"] = botocore.UNSIGNED
        config = botocore.config.Config(**config_kwargs) if config_kwargs else None
        if self._client_config is not None:
            config = self._client_config if config is None else self._client_config.merge(config)
        if "use_ssl" in options:
            client_kwargs.setdefault("use_ssl", options["use_ssl"])
        session = (boto3.session.Session(profile_name=options["profile"]) if options.get("profile")
                   else self._session)
        return session.client("s3", region_name=region, endpoint_url=endpoint, aws_access_key_id=key,
                              aws_secret_access_key=secret, aws_session_token=token, config=config,
                              **client_kwargs)

    def _best_s3(self, s3_backends: Sequence[Backend]) -> str | None:
        if not s3_backends:
            return None
        ids = {b.id for b in s3_backends}
        for score in self.router.placement.get_green_scores():
            if score.backend_id in ids:
                return score.backend_id
        return s3_backends[0].id

    def _error(self, code: str, message: str, operation: str, status: int, *,
               backend_id: str | None = None, location: str | None = None, **fields: str) -> Any:
        """A ``ClientError`` (its modelled subclass when S3 has one) shaped as boto3 raises it."""
        response = {"Error": {"Code": code, "Message": message, **fields},
                    "ResponseMetadata": _response_metadata(status, backend_id=backend_id, location=location)}
        return self._default.exceptions.from_code(code)(response, operation)

    def _check(self, operation: str, params: dict[str, Any], *, writing: bool = False,
               reading: bool = False) -> dict[str, Any]:
        """Validate ``params`` as boto3 would, then refuse what greenroute cannot honour."""
        shape = self.meta.service_model.operation_model(operation).input_shape
        botocore.validate.validate_parameters(params, shape)
        bucket = params.get("Bucket")
        if isinstance(bucket, str) and not _BUCKET.match(bucket):
            raise botocore.exceptions.ParamValidationError(
                report=f'Invalid bucket name "{bucket}": Bucket name must match the regex "{_BUCKET.pattern}"')
        refused = sorted(name for name, value in params.items()
                         if (name in _REFUSED or (writing and name in _REFUSED_ON_WRITE)
                             or (reading and name in _REFUSED_ON_READ)
                             or (name in _HARMLESS and value != _HARMLESS[name])))
        if refused:
            raise self._error("NotImplemented", f"greenroute does not support {', '.join(refused)} (it cannot "
                              "honour them on every backend)", operation, 501)
        return params

    def _write_path(self, operation: str, bucket: str, key: str) -> str:
        try:
            return validate_path(f"{bucket}/{key}")
        except InvalidPathError as exc:
            raise self._error("InvalidArgument", f"greenroute cannot store key {key!r}: {exc.why}", operation,
                              400, ArgumentName="Key", ArgumentValue=key) from exc

    @staticmethod
    def _user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
        """The caller's metadata as greenroute stores it: lowercased keys (as S3 does), without ``greenroute_*``."""
        return {k.lower(): v for k, v in (metadata or {}).items() if not k.lower().startswith("greenroute_")}

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str | None = None, *, missing: str = "NoSuchKey",
                backend_id: str | None = None) -> Iterator[None]:
        """Raise greenroute's errors inside as ``ClientError`` with S3's codes, keeping the cause."""
        try:
            yield
        except botocore.exceptions.ClientError:
            raise
        except InvalidPathError as exc:
            raise self._error("InvalidArgument", str(exc), operation, 400, backend_id=backend_id) from exc
        except NoEligibleBackendError as exc:
            raise self._error("InvalidRequest", str(exc), operation, 400, backend_id=backend_id) from exc
        except FileNotFoundError as exc:
            raise self._missing(missing, operation, key, backend_id=backend_id) from exc
        except PermissionError as exc:
            raise self._error("AccessDenied", str(exc), operation, 403, backend_id=backend_id) from exc
        except (TargetUnavailableError, AllBackendsFailedError) as exc:
            raise self._error("ServiceUnavailable", str(exc), operation, 503, backend_id=backend_id) from exc
        except MetadataNotSupportedError as exc:
            raise self._error("InvalidArgument", str(exc), operation, 400, backend_id=backend_id) from exc
        except OSError as exc:
            raise self._error("InternalError", str(exc), operation, 500, backend_id=backend_id) from exc
        except KeyError as exc:  # the catalog names a backend that is no longer configured
            raise self._error("InternalError", f"backend {exc} is not configured", operation, 500,
                              backend_id=backend_id) from exc

    def _missing(self, code: str, operation: str, key: str | None, *, backend_id: str | None = None) -> Any:
        if code == "404":  # HEAD has no body, so S3 answers with the bare status
            return self._error("404", "Not Found", operation, 404, backend_id=backend_id)
        if code == "NoSuchBucket":
            return self._error(code, "The specified bucket does not exist", operation, 404, backend_id=backend_id)
        return self._error(code, "The specified key does not exist.", operation, 404, backend_id=backend_id,
                           Key=key or "")

    def _from_physical(self, exc: Any, operation: str, key: str, entry: CatalogEntry) -> NoReturn:
        """Re-raise a real client's ``ClientError`` about a physical object in logical terms."""
        response = python_copy.deepcopy(exc.response)
        error = response.setdefault("Error", {})
        if "Key" in error:
            error["Key"] = key
        response.setdefault("ResponseMetadata", {}).update(GreenrouteBackend=entry.backend_id,
                                                           GreenrouteLocation=entry.url)
        code = str(error.get("Code", ""))
        raise self._default.exceptions.from_code(code)(response, operation) from exc

    def _emit_request(self, operation: str, body: Any) -> None:
        self.meta.events.emit(f"request-created.s3.{operation}", request=_RoutedRequest(body),
                              operation_name=operation)

    def _spool(self) -> IO[bytes]:
        return cast(IO[bytes], tempfile.SpooledTemporaryFile(max_size=self._spool_memory_bytes, dir=self._spool_dir))

    def _payload(self, body: Any) -> tuple[bytes | IO[bytes], IO[bytes] | None]:
        """``body`` as the router takes it, and a spool to close afterwards (if one was needed)."""
        if body is None:
            return b"", None
        if isinstance(body, str):
            return body.encode(), None
        if isinstance(body, bytes | bytearray | memoryview):
            return bytes(body), None
        seekable = getattr(body, "seekable", None)
        if callable(seekable):
            with contextlib.suppress(OSError, ValueError):
                if seekable():
                    return cast(IO[bytes], body), None
        elif hasattr(body, "seek") and hasattr(body, "tell"):
            return cast(IO[bytes], _BodyAdapter(body)), None
        spool = self._spool()  # a one-way stream: spooled so the write can fail over
        shutil.copyfileobj(body, spool, _COPY_CHUNK)
        spool.seek(0)
        return spool, spool

    def _lookup(self, operation: str, bucket: str, key: str, *, missing: str = "NoSuchKey") -> CatalogEntry:
        entry = self.router.lookup(f"{bucket}/{key}")
        if entry is None:
            raise self._missing(missing, operation, key)
        return entry

    def _physical(self, entry: CatalogEntry) -> tuple[Any, str, str] | None:
        """``(client, bucket, key)`` of an entry on an S3 backend, or ``None``."""
        client = self._clients.get(entry.backend_id)
        if client is None:
            return None
        bucket, prefix = split_root(self.router.placement.backend(entry.backend_id), ("s3", "s3a"))
        return client, bucket, f"{prefix}/{entry.path}" if prefix else entry.path

    def _etag(self, entry: CatalogEntry) -> str:
        """The entry's etag; asked of its target when the catalog has none (a streamed S3 upload)."""
        if entry.etag:
            return _quote_etag(entry.etag)
        with contextlib.suppress(OSError, KeyError):
            return _quote_etag(self.router.target(entry.backend_id).stat(entry.path).etag)
        return '""'

    def _result_etag(self, result: WriteResult) -> str:
        if result.etag:
            return _quote_etag(result.etag)
        entry = self.router.lookup(result.path)
        return self._etag(entry) if entry is not None else '""'

    # -- writes ---------------------------------------------------------------------------------

    def put_object(self, **params: Any) -> dict[str, Any]:
        """Place and store an object (``PutObject``)."""
        self._check("PutObject", params, writing=True)
        bucket, key = params["Bucket"], params["Key"]
        path = self._write_path("PutObject", bucket, key)
        user = self._user_metadata(params.get("Metadata"))
        body = params.get("Body")
        self._emit_request("PutObject", body)
        payload, spool = self._payload(body)
        try:
            with self._errors("PutObject", key, missing="NoSuchBucket"):
                result = self.router.write(path, payload, metadata=user, size_hint=params.get("ContentLength"))
        finally:
            if spool is not None:
                spool.close()
        return {"ETag": self._result_etag(result), "ResponseMetadata": _write_metadata(result)}

    def create_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Begin a multipart upload; nothing is placed or recorded until it completes."""
        self._check("CreateMultipartUpload", params, writing=True)
        bucket, key = params["Bucket"], params["Key"]
        path = self._write_path("CreateMultipartUpload", bucket, key)
        upload = _Upload(uuid.uuid4().hex, bucket, key, path,
                         self._user_metadata(params.get("Metadata")))
        with self._uploads_lock:
            self._uploads[upload.upload_id] = upload
        response = {"Bucket": bucket, "Key": key, "UploadId": upload.upload_id,
                    "ResponseMetadata": _response_metadata(200)}
        if "ChecksumAlgorithm" in params:
            response["ChecksumAlgorithm"] = params["ChecksumAlgorithm"]
        return response

    def _upload(self, operation: str, params: Mapping[str, Any]) -> _Upload:
        with self._uploads_lock:
            upload = self._uploads.get(params["UploadId"])
        if upload is None or upload.bucket != params["Bucket"] or upload.key != params["Key"]:
            raise self._no_such_upload(operation, str(params["UploadId"]))
        return upload

    def _no_such_upload(self, operation: str, upload_id: str) -> Any:
        return self._error("NoSuchUpload", "The specified multipart upload does not exist. The upload ID may be "
                           "invalid, or the upload may have been aborted or completed.", operation, 404,
                           UploadId=upload_id)

    def upload_part(self, **params: Any) -> dict[str, Any]:
        """Spool one part (any order, any thread); re-uploading a part number replaces it."""
        self._check("UploadPart", params)
        upload = self._upload("UploadPart", params)
        number = int(params["PartNumber"])
        if not 1 <= number <= _MAX_PARTS:
            raise self._error("InvalidArgument", f"Part number must be an integer between 1 and {_MAX_PARTS}, "
                              "inclusive", "UploadPart", 400, ArgumentName="partNumber",
                              ArgumentValue=str(number))
        body = params.get("Body")
        self._emit_request("UploadPart", body)
        spool = self._spool()
        md5, crc, size = hashlib.md5(usedforsecurity=False), 0, 0
        try:
            if isinstance(body, str):
                body = body.encode()
            chunks: Iterator[bytes] = (iter([bytes(body)]) if isinstance(body, bytes | bytearray | memoryview)
                                       else iter(lambda: body.read(_COPY_CHUNK), b"") if body is not None
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
        response: dict[str, Any] = {"ETag": _quote_etag(part.etag), "ResponseMetadata": _response_metadata(200)}
        if str(params.get("ChecksumAlgorithm", "")).upper() == "CRC32":
            response["ChecksumCRC32"] = part.crc32
        return response

    def complete_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Hand the listed parts to the router as one object; the catalog entry commits now."""
        self._check("CompleteMultipartUpload", params, writing=True)
        upload = self._upload("CompleteMultipartUpload", params)
        listed = list((params.get("MultipartUpload") or {}).get("Parts") or [])
        op = "CompleteMultipartUpload"
        if not listed:
            raise self._error("MalformedXML", "The XML you provided was not well-formed or did not validate "
                              "against our published schema", op, 400)
        with upload.lock:
            if upload.closed:
                raise self._no_such_upload(op, upload.upload_id)
            chosen: list[_Part] = []
            previous = 0
            for item in listed:
                number = int(item.get("PartNumber", 0))
                if number <= previous:
                    raise self._error("InvalidPartOrder", "The list of parts was not in ascending order. The parts "
                                      "list must be specified in order by part number.", op, 400)
                previous = number
                part = upload.parts.get(number)
                if part is None or str(item.get("ETag", "")).strip('"') != part.etag or (
                        "ChecksumCRC32" in item and item["ChecksumCRC32"] != part.crc32):
                    raise self._error("InvalidPart", "One or more of the specified parts could not be found. The "
                                      "part may not have been uploaded, or the specified entity tag may not match "
                                      "the part's entity tag.", op, 400, PartNumber=str(number))
                chosen.append(part)
            for number, part in zip((int(i["PartNumber"]) for i in listed[:-1]), chosen[:-1], strict=True):
                if part.size < _MIN_PART_BYTES:
                    raise self._error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed "
                                      "size", op, 400, PartNumber=str(number), MinSizeAllowed=str(_MIN_PART_BYTES),
                                      ProposedSize=str(part.size))
            reader = _PartsReader([p.spool for p in chosen], [p.size for p in chosen])
            with self._errors(op, upload.key, missing="NoSuchBucket"):
                result = self.router.write(upload.path, cast(IO[bytes], reader), metadata=upload.metadata,
                                           size_hint=sum(p.size for p in chosen))
            with self._uploads_lock:
                self._uploads.pop(upload.upload_id, None)
            upload.discard()
        return {"Location": result.url, "Bucket": upload.bucket, "Key": upload.key,
                "ETag": self._result_etag(result), "ResponseMetadata": _write_metadata(result)}

    def abort_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Drop a multipart upload and its parts; nothing was placed or recorded."""
        self._check("AbortMultipartUpload", params)
        upload = self._upload("AbortMultipartUpload", params)
        with self._uploads_lock:
            self._uploads.pop(upload.upload_id, None)
        with upload.lock:
            upload.discard()
        return {"ResponseMetadata": _response_metadata(204)}

    def upload_file(self, Filename: Any, Bucket: str, Key: str, ExtraArgs: Mapping[str, Any] | None = None,
                    Callback: Callable[[int], object] | None = None, Config: Any = None) -> None:
        """boto3's managed upload of a file, with its ``put_object`` or multipart calls routed."""
        boto3.s3.inject.upload_file(self, Filename, Bucket, Key, ExtraArgs=ExtraArgs, Callback=Callback,
                                    Config=_classic(Config))

    def upload_fileobj(self, Fileobj: Any, Bucket: str, Key: str,
                       ExtraArgs: Mapping[str, Any] | None = None,
                       Callback: Callable[[int], object] | None = None, Config: Any = None) -> None:
        """boto3's managed upload of a file object, with its ``put_object`` or multipart calls routed."""
        boto3.s3.inject.upload_fileobj(self, Fileobj, Bucket, Key, ExtraArgs=ExtraArgs, Callback=Callback,
                                       Config=_classic(Config))

    # -- copies ---------------------------------------------------------------------------------

    def copy_object(self, **params: Any) -> dict[str, Any]:
        """Copy a logical object; the copy is placed like any write (server-side when it stays put)."""
        source = params.get("CopySource")
        checked = dict(params)
        if isinstance(source, Mapping):  # boto3 turns the dict form into a string before validating
            checked["CopySource"] = f"{source.get('Bucket')}/{source.get('Key')}"
        self._check("CopyObject", checked, writing=True)
        src_bucket, src_key = self._copy_source(source)
        bucket, key = params["Bucket"], params["Key"]
        dst = self._write_path("CopyObject", bucket, key)
        src = f"{src_bucket}/{src_key}"
        directive = params.get("MetadataDirective", "COPY")
        entry = self._lookup("CopyObject", src_bucket, src_key)
        with self._errors("CopyObject", src_key):
            if directive == "REPLACE":
                user = self._user_metadata(params.get("Metadata"))
                with self.router.open(src, "rb") as stream:
                    result = self.router.write(dst, stream, metadata=user, size_hint=entry.size)
            else:
                if src == dst:
                    raise self._error("InvalidRequest", "This copy request is illegal because it is trying to "
                                      "copy an object to itself without changing the object's metadata, storage "
                                      "class, website redirect location or encryption attributes.", "CopyObject",
                                      400)
                result = self.router.copy(src, dst)
        committed = self.router.lookup(dst)
        modified = committed.updated_at if committed is not None else utcnow()
        return {"CopyObjectResult": {"ETag": self._result_etag(result), "LastModified": modified},
                "ResponseMetadata": _write_metadata(result)}

    def _copy_source(self, source: Any) -> tuple[str, str]:
        if isinstance(source, Mapping):
            if source.get("VersionId"):
                raise self._error("NotImplemented", "greenroute keeps no object versions", "CopyObject", 501)
            bucket, key = source.get("Bucket"), source.get("Key")
        else:
            text = str(source)
            if "?versionId=" in text:
                raise self._error("NotImplemented", "greenroute keeps no object versions", "CopyObject", 501)
            bucket, _, key = text.lstrip("/").partition("/")
        if not bucket or not key:
            raise self._error("InvalidArgument", "Copy Source must mention the source bucket and key: "
                              "sourcebucket/sourcekey", "CopyObject", 400, ArgumentName="x-amz-copy-source")
        return str(bucket), str(key)

    def copy(self, CopySource: Any, Bucket: str, Key: str,
             ExtraArgs: Mapping[str, Any] | None = None,
             Callback: Callable[[int], object] | None = None, SourceClient: Any = None,
             Config: Any = None) -> None:
        """A managed copy: ``copy_object`` through the router (the router streams between backends).

        With a ``SourceClient`` other than this client, the source is a physical object read
        through that client and written here as a new object.
        """
        extra = dict(ExtraArgs or {})
        allowed = set(boto3.s3.transfer.S3Transfer.ALLOWED_COPY_ARGS)
        unknown = sorted(set(extra) - allowed)
        if unknown:
            raise ValueError(f"Invalid extra_args key '{unknown[0]}', must be one of: {', '.join(sorted(allowed))}")
        if SourceClient is not None and SourceClient is not self:
            src_bucket, src_key = self._copy_source(CopySource)
            got = SourceClient.get_object(Bucket=src_bucket, Key=src_key)
            replacement = extra.pop("Metadata", None)
            metadata = replacement if extra.pop("MetadataDirective", None) == "REPLACE" else got.get("Metadata")
            with contextlib.closing(got["Body"]) as body:
                self.put_object(Bucket=Bucket, Key=Key, Body=body, Metadata=metadata or {},
                                ContentLength=got.get("ContentLength"), **extra)
            size = int(got.get("ContentLength") or 0)
        else:
            self.copy_object(CopySource=CopySource, Bucket=Bucket, Key=Key, **extra)
            entry = self.router.lookup(f"{Bucket}/{Key}")
            size = entry.size if entry is not None else 0
        if Callback is not None:
            Callback(size)

    # -- reads ----------------------------------------------------------------------------------

    def get_object(self, **params: Any) -> dict[str, Any]:
        """Read a logical object (``Range`` and conditional headers included); ``Body`` streams."""
        return self._read("GetObject", params)

    def head_object(self, **params: Any) -> dict[str, Any]:
        """A logical object's size, etag, modification time and metadata (a missing key is ``404``)."""
        return self._read("HeadObject", params)

    def _read(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        self._check(operation, params, reading=True)
        bucket, key = params["Bucket"], params["Key"]
        head = operation == "HeadObject"
        entry = self._lookup(operation, bucket, key, missing="404" if head else "NoSuchKey")
        physical = self._physical(entry)
        if physical is not None:
            client, phys_bucket, phys_key = physical
            call = {k: v for k, v in params.items() if k != "ExpectedBucketOwner"}
            call.update(Bucket=phys_bucket, Key=phys_key)
            try:
                response: dict[str, Any] = (client.head_object if head else client.get_object)(**call)
            except botocore.exceptions.ClientError as exc:
                self._from_physical(exc, operation, key, entry)
            except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
                raise self._error("ServiceUnavailable", f"{entry.backend_id} is unreachable: {exc}", operation, 503,
                                  backend_id=entry.backend_id, location=entry.url) from exc
            response["Metadata"] = canonical_metadata(response.get("Metadata") or {})
            response.setdefault("ResponseMetadata", {}).update(GreenrouteBackend=entry.backend_id,
                                                               GreenrouteLocation=entry.url)
            return response
        return self._read_target(operation, params, entry, head)

    def _read_target(self, operation: str, params: Mapping[str, Any], entry: CatalogEntry,
                     head: bool) -> dict[str, Any]:
        key = params["Key"]
        with self._errors(operation, key, missing="404" if head else "NoSuchKey", backend_id=entry.backend_id):
            target = self.router.target(entry.backend_id)
            info = target.stat(entry.path)
        etag = _quote_etag(info.etag or entry.etag)
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
            with self._errors(operation, key, backend_id=entry.backend_id):
                stream = target.open_read(entry.path)
                try:
                    if start:
                        stream.seek(start)
                except BaseException:
                    stream.close()
                    raise
            response["Body"] = botocore.response.StreamingBody(_RangeReader(stream, length), length)
        response["ResponseMetadata"] = _response_metadata(status, backend_id=entry.backend_id, location=entry.url)
        return response

    def _preconditions(self, operation: str, params: Mapping[str, Any], etag: str, modified: datetime,
                       entry: CatalogEntry) -> None:
        def fail(code: str, message: str, status: int) -> NoReturn:
            raise self._error(code, message, operation, status, backend_id=entry.backend_id, location=entry.url)

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
        return self._error("InvalidRange", "The requested range is not satisfiable", operation, 416,
                           backend_id=entry.backend_id, location=entry.url, ActualObjectSize=str(size))

    def download_file(self, Bucket: str, Key: str, Filename: Any,
                      ExtraArgs: Mapping[str, Any] | None = None,
                      Callback: Callable[[int], object] | None = None, Config: Any = None) -> None:
        """boto3's managed download to a file, with its ``head_object`` and ranged ``get_object`` routed."""
        boto3.s3.inject.download_file(self, Bucket, Key, Filename, ExtraArgs=ExtraArgs, Callback=Callback,
                                      Config=_classic(Config))

    def download_fileobj(self, Bucket: str, Key: str, Fileobj: Any,
                         ExtraArgs: Mapping[str, Any] | None = None,
                         Callback: Callable[[int], object] | None = None, Config: Any = None) -> None:
        """boto3's managed download to a file object, with its ``head_object`` and ``get_object`` routed."""
        boto3.s3.inject.download_fileobj(self, Bucket, Key, Fileobj, ExtraArgs=ExtraArgs, Callback=Callback,
                                         Config=_classic(Config))

    # -- deletes --------------------------------------------------------------------------------

    def delete_object(self, **params: Any) -> dict[str, Any]:
        """Delete a logical object and its catalog entry; a missing key succeeds, as on S3."""
        self._check("DeleteObject", params)
        entry = self._delete(params["Bucket"], params["Key"], "DeleteObject")
        backend = entry.backend_id if entry is not None else None
        return {"ResponseMetadata": _response_metadata(204, backend_id=backend,
                                                       location=entry.url if entry is not None else None)}

    def _delete(self, bucket: str, key: str, operation: str) -> CatalogEntry | None:
        path = f"{bucket}/{key}"
        entry = self.router.lookup(path)
        if entry is None:
            return None
        with self._errors(operation, key, backend_id=entry.backend_id):
            try:
                self.router.delete(path)
            except FileNotFoundError:  # deleted by someone else meanwhile
                return None
        return entry

    def delete_objects(self, **params: Any) -> dict[str, Any]:
        """Delete up to 1000 logical objects; each failure is reported in ``Errors``."""
        self._check("DeleteObjects", params)
        request = params["Delete"]
        objects = list(request.get("Objects") or [])
        if not objects or len(objects) > _MAX_DELETE_KEYS:
            raise self._error("MalformedXML", "The XML you provided was not well-formed or did not validate "
                              "against our published schema", "DeleteObjects", 400)
        deleted: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in objects:
            key = item["Key"]
            if item.get("VersionId"):
                errors.append({"Key": key, "VersionId": item["VersionId"], "Code": "NotImplemented",
                               "Message": "greenroute keeps no object versions"})
                continue
            try:
                self._delete(params["Bucket"], key, "DeleteObjects")
            except botocore.exceptions.ClientError as exc:
                errors.append({"Key": key, "Code": exc.response["Error"]["Code"],
                               "Message": exc.response["Error"]["Message"]})
                continue
            if not request.get("Quiet"):
                deleted.append({"Key": key})
        response: dict[str, Any] = {"ResponseMetadata": _response_metadata(200)}
        if deleted:
            response["Deleted"] = deleted
        if errors:
            response["Errors"] = errors
        return response

    # -- listings -------------------------------------------------------------------------------

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        """A page of a logical bucket, from the catalog, merged across backends in key order."""
        self._check("ListObjectsV2", params)
        bucket = params["Bucket"]
        prefix = params.get("Prefix") or ""
        delimiter = params.get("Delimiter") or ""
        max_keys = max(0, min(int(params.get("MaxKeys", _MAX_LIST_KEYS)), _MAX_LIST_KEYS))
        after: str | None = params.get("StartAfter") or None
        skip: str | None = None
        token = params.get("ContinuationToken")
        if token is not None:
            after, is_prefix = self._decode_token(token)
            skip = after if is_prefix else None
        base = len(bucket) + 1
        contents: list[dict[str, Any]] = []
        prefixes: list[str] = []
        last: tuple[str, bool] | None = None
        truncated = False
        for entry in self._entries(f"{bucket}/{prefix}", None if after is None else f"{bucket}/{after}"):
            key = entry.path[base:]
            if (after is not None and key <= after) or (skip is not None and key.startswith(skip)):
                continue
            found = key.find(delimiter, len(prefix)) if delimiter else -1
            common = key[:found + len(delimiter)] if found >= 0 else None
            if common is not None and prefixes and prefixes[-1] == common:
                continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = max_keys > 0
                break
            if common is not None:
                prefixes.append(common)
                skip, last = common, (common, True)
            else:
                contents.append({"Key": key, "LastModified": entry.updated_at, "ETag": self._etag(entry),
                                 "Size": entry.size, "StorageClass": "STANDARD"})
                last = (key, False)
        encode = params.get("EncodingType") == "url"

        def shown(text: str) -> str:
            return quote_plus(text, safe="/") if encode else text

        response: dict[str, Any] = {"IsTruncated": truncated, "Name": bucket, "Prefix": shown(prefix),
                                    "MaxKeys": max_keys, "KeyCount": len(contents) + len(prefixes)}
        if contents:
            response["Contents"] = [{**c, "Key": shown(c["Key"])} for c in contents]
        if prefixes:
            response["CommonPrefixes"] = [{"Prefix": shown(p)} for p in prefixes]
        if delimiter:
            response["Delimiter"] = shown(delimiter)
        if encode:
            response["EncodingType"] = "url"
        if token is not None:
            response["ContinuationToken"] = token
        if "StartAfter" in params:
            response["StartAfter"] = shown(params["StartAfter"])
        if truncated and last is not None:
            response["NextContinuationToken"] = self._encode_token(*last)
        response["ResponseMetadata"] = _response_metadata(200)
        return response

    def _entries(self, prefix: str, start_after: str | None, page: int = 1000) -> Iterator[CatalogEntry]:
        """Catalog entries under ``prefix`` after ``start_after``, fetched a page at a time."""
        while True:
            batch = self.router.list(prefix, start_after=start_after, limit=page)
            yield from batch
            if len(batch) < page:
                return
            start_after = batch[-1].path

    @staticmethod
    def _encode_token(key: str, is_prefix: bool) -> str:
        return base64.urlsafe_b64encode(("p" if is_prefix else "k").encode() + key.encode()).decode()

    def _decode_token(self, token: str) -> tuple[str, bool]:
        try:
            raw = base64.urlsafe_b64decode(token.encode()).decode()
        except (binascii.Error, UnicodeError, ValueError) as exc:
            raise self._error("InvalidArgument", "The continuation token provided is incorrect", "ListObjectsV2",
                              400, ArgumentName="continuation-token") from exc
        if raw[:1] not in ("k", "p"):
            raise self._error("InvalidArgument", "The continuation token provided is incorrect", "ListObjectsV2",
                              400, ArgumentName="continuation-token")
        return raw[1:], raw[0] == "p"

    def get_paginator(self, operation_name: str) -> Any:
        """boto3's own paginator; ``list_objects_v2`` pages through this client, others pass through."""
        if operation_name != "list_objects_v2":
            return self._default.get_paginator(operation_name)
        config = _s3_model("paginators-1")["pagination"]["ListObjectsV2"]
        model = self.meta.service_model.operation_model("ListObjectsV2")
        return botocore.paginate.Paginator(self.list_objects_v2, config, model)

    def can_paginate(self, operation_name: str) -> bool:
        """Whether ``operation_name`` has a paginator."""
        return bool(self._default.can_paginate(operation_name))

    def head_bucket(self, **params: Any) -> dict[str, Any]:
        """A logical bucket always exists: it is a namespace, created by its first object."""
        self._check("HeadBucket", params)
        return {"ResponseMetadata": _response_metadata(200)}

    def get_waiter(self, waiter_name: str) -> Any:
        """botocore's waiter, polling this client (object and bucket waiters) or the default one."""
        if waiter_name not in _OBJECT_WAITERS:
            return self._default.get_waiter(waiter_name)
        model = botocore.waiter.WaiterModel(_s3_model("waiters-2"))
        names = {botocore.xform_name(name): name for name in model.waiter_names}
        return botocore.waiter.create_waiter_with_client(names[waiter_name], model, self)

    # -- presigned URLs -------------------------------------------------------------------------

    def generate_presigned_url(self, ClientMethod: str, Params: Mapping[str, Any] | None = None,
                               ExpiresIn: int = 3600, HttpMethod: str | None = None) -> str:
        """A presigned URL for the physical object of a logical key (on an S3 backend).

        Methods greenroute does not route are signed by the default client, unchanged.

        Raises:
            botocore.exceptions.ClientError: ``NoSuchKey`` for a missing key, ``NotImplemented`` for an
                object on a GCS or Azure backend or for a write (it would bypass placement and the catalog).
        """
        params = dict(Params or {})
        if ClientMethod in ("get_object", "head_object"):
            operation = "GetObject" if ClientMethod == "get_object" else "HeadObject"
            entry = self._lookup(operation, params.get("Bucket", ""), params.get("Key", ""))
            physical = self._physical(entry)
            if physical is None:
                raise self._error("NotImplemented", f"presigned URLs need an S3 backend; {entry.path} is on "
                                  f"{entry.backend_id}", operation, 501, backend_id=entry.backend_id,
                                  location=entry.url)
            client, bucket, key = physical
            params.update(Bucket=bucket, Key=key)
            return str(client.generate_presigned_url(ClientMethod, Params=params, ExpiresIn=ExpiresIn,
                                                     HttpMethod=HttpMethod))
        if ClientMethod in _UNSIGNABLE:
            raise self._error("NotImplemented", f"a presigned {ClientMethod} would bypass greenroute's placement "
                              "and catalog", ClientMethod, 501)
        return str(self._default.generate_presigned_url(ClientMethod, Params=Params, ExpiresIn=ExpiresIn,
                                                        HttpMethod=HttpMethod))

    def generate_presigned_post(self, Bucket: str, Key: str, **kwargs: Any) -> NoReturn:
        """Refused: a presigned POST would write around greenroute's placement and catalog."""
        raise self._error("NotImplemented", "a presigned POST would bypass greenroute's placement and catalog",
                          "PostObject", 501)
