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

A multipart upload is placed at ``create_multipart_upload`` (on the file's size for boto3's managed
uploads) and its parts go straight to the chosen backend's own multipart upload, in any order and
from any thread: nothing is spooled on this machine. A backend fault fails over until the first
part is accepted. ``complete_multipart_upload`` joins the parts on the backend with the carbon
values of the real size and commits the catalog entry; ``abort_multipart_upload`` drops the
backend's parts. ``IfNoneMatch="*"`` on ``put_object`` or ``complete_multipart_upload`` is an
exclusive create (``PreconditionFailed``, 412, when the key exists). Uploads live in this client
object, so one upload cannot be shared between processes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn
from urllib.parse import quote_plus

import boto3.s3.inject  # type: ignore[import-untyped]
import boto3.s3.transfer  # type: ignore[import-untyped]
import boto3.session  # type: ignore[import-untyped]
import botocore  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
import botocore.paginate  # type: ignore[import-untyped]
import botocore.waiter  # type: ignore[import-untyped]

from greenroute.config import GreenrouteConfig
from greenroute.model import CatalogEntry, utcnow
from greenroute.router import GreenRouter

from ._multipart import Uploads
from ._passthrough import OBJECT_WAITERS, UNSIGNABLE, ClientMeta, RealClients, managed_transfer, s3_model
from ._reads import Reads
from ._shaping import (
    MIB,
    RoutedRequest,
    Shaper,
    payload,
    quote_etag,
    response_metadata,
    spooler,
    user_metadata,
    write_metadata,
    write_response,
)

__all__ = ["GreenS3Client"]

_MAX_DELETE_KEYS = 1000
_MAX_LIST_KEYS = 1000
#: boto3's managed uploads, run against the drop-in so that their ``put_object`` or multipart calls are routed.
_upload_file = managed_transfer(boto3.s3.inject.upload_file)
_upload_fileobj = managed_transfer(boto3.s3.inject.upload_fileobj)


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
    * ACLs other than ``private``, SSE-C and SSE-KMS, object lock, versions, writes conditional on
      an ETag (``IfMatch``) and ``PartNumber`` reads are refused with ``NotImplemented`` (501).
      ``IfNoneMatch="*"`` (create only) is honoured on ``put_object`` and
      ``complete_multipart_upload``. Presentation headers (``ContentType``, ``CacheControl``, ...),
      ``StorageClass``, ``Tagging`` and checksums are accepted and not stored: the router's targets
      store bytes and metadata only.
    * A logical bucket exists as soon as it is named: ``head_bucket`` succeeds and an empty
      namespace lists as empty.
    * A multipart upload can fail over to another backend only until its first part is accepted;
      after that a backend fault fails the part (``ServiceUnavailable``): abort and upload again.

    As on S3, ``get_object`` of a missing key fails with ``NoSuchKey`` and ``head_object`` with a
    bare ``404`` (HEAD has no error body); ``delete_object`` of a missing key succeeds.

    Args:
        router: The router that places, records and finds objects.
        default_backend: The S3 backend whose client serves pass-through calls (default: the
            best-scoring S3 backend now).
        session: The boto3 session that builds the real clients (default: a new one).
        client_config: A ``botocore.config.Config`` merged into every real client's configuration.
        spool_dir: Where a one-way ``put_object`` body (one that cannot seek) is spooled so that the
            write can fail over (default: the system's temporary directory). Multipart parts are
            never spooled.
        spool_memory_bytes: Such bodies up to this size stay in memory.
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
                 spool_memory_bytes: int = MIB, owns_router: bool = False) -> None:
        self.router = router
        self._owns_router = owns_router
        self._real = RealClients(router, default_backend=default_backend, client_config=client_config,
                                 session=session if session is not None else boto3.session.Session())
        self.default_backend_id = self._real.default_backend_id
        self._default: Any = self._real.default
        self.meta = ClientMeta(self._default.meta)
        self._shape = Shaper(self._default)
        self._spool = spooler(os.fspath(spool_dir) if spool_dir is not None else None, spool_memory_bytes)
        self._uploads = Uploads(router, self._shape, self._emit_request)
        self._reads = Reads(router, self._shape, self._real)

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
        self._uploads.close()
        self._real.close()
        if self._owns_router:
            self.router.close()

    def physical_client(self, backend_id: str) -> Any:
        """The real boto3 client of an S3 backend.

        Raises:
            KeyError: No S3 backend has that id.
        """
        return self._real.clients[backend_id]

    def _emit_request(self, operation: str, body: Any) -> None:
        self.meta.events.emit(f"request-created.s3.{operation}", request=RoutedRequest(body),
                              operation_name=operation)

    # -- writes ---------------------------------------------------------------------------------

    def put_object(self, **params: Any) -> dict[str, Any]:
        """Place and store an object (``PutObject``)."""
        self._shape.check("PutObject", params, writing=True)
        bucket, key = params["Bucket"], params["Key"]
        path = self._shape.write_path("PutObject", bucket, key)
        user = user_metadata(params.get("Metadata"))
        body = params.get("Body")
        self._emit_request("PutObject", body)
        data, spool = payload(body, self._spool)
        try:
            with self._shape.errors("PutObject", key, missing="NoSuchBucket"):
                result = self.router.write(path, data, metadata=user, size_hint=params.get("ContentLength"),
                                           exclusive=params.get("IfNoneMatch") == "*")
        finally:
            if spool is not None:
                spool.close()
        return write_response(result)

    def create_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Place a multipart upload and begin it on the chosen backend; nothing is committed until it completes."""
        self._shape.check("CreateMultipartUpload", params, writing=True)
        return self._uploads.create(params)

    def upload_part(self, **params: Any) -> dict[str, Any]:
        """Send one part to the backend (any order, any thread); re-uploading a part number replaces it."""
        self._shape.check("UploadPart", params)
        return self._uploads.upload_part(params)

    def complete_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Join the listed parts on the backend; the catalog entry commits now (``IfNoneMatch="*"``: create only)."""
        self._shape.check("CompleteMultipartUpload", params, writing=True)
        return self._uploads.complete(params)

    def abort_multipart_upload(self, **params: Any) -> dict[str, Any]:
        """Drop a multipart upload and the parts the backend holds; nothing was committed."""
        self._shape.check("AbortMultipartUpload", params)
        return self._uploads.abort(params)

    def upload_file(self, Filename: str | os.PathLike[str], Bucket: str, Key: str,
                    ExtraArgs: Mapping[str, Any] | None = None, Callback: Callable[[int], object] | None = None,
                    Config: Any = None) -> None:
        """boto3's managed upload of a file, routed (``put_object``, or multipart placed on the file's size)."""
        with self._uploads.expecting(Bucket, Key, _file_size(Filename)):
            _upload_file(self, Filename, Bucket, Key, ExtraArgs=ExtraArgs, Callback=Callback, Config=Config)

    def upload_fileobj(self, Fileobj: Any, Bucket: str, Key: str, ExtraArgs: Mapping[str, Any] | None = None,
                       Callback: Callable[[int], object] | None = None, Config: Any = None) -> None:
        """boto3's managed upload of a file object, routed (multipart placed on its size when it can seek)."""
        with self._uploads.expecting(Bucket, Key, _remaining(Fileobj)):
            _upload_fileobj(self, Fileobj, Bucket, Key, ExtraArgs=ExtraArgs, Callback=Callback, Config=Config)

    # -- copies ---------------------------------------------------------------------------------

    def copy_object(self, **params: Any) -> dict[str, Any]:
        """Copy a logical object; the copy is placed like any write (server-side when it stays put)."""
        source = params.get("CopySource")
        checked = dict(params)
        if isinstance(source, Mapping):  # boto3 turns the dict form into a string before validating
            checked["CopySource"] = f"{source.get('Bucket')}/{source.get('Key')}"
        self._shape.check("CopyObject", checked, writing=True)
        src_bucket, src_key = self._copy_source(source)
        bucket, key = params["Bucket"], params["Key"]
        dst = self._shape.write_path("CopyObject", bucket, key)
        src = f"{src_bucket}/{src_key}"
        directive = params.get("MetadataDirective", "COPY")
        entry = self._reads.lookup("CopyObject", src_bucket, src_key)
        with self._shape.errors("CopyObject", src_key):
            if directive == "REPLACE":
                user = user_metadata(params.get("Metadata"))
                with self.router.open(src, "rb") as stream:
                    result = self.router.write(dst, stream, metadata=user, size_hint=entry.size)
            else:
                if src == dst:
                    raise self._shape.error("InvalidRequest", "This copy request is illegal because it is trying to "
                                      "copy an object to itself without changing the object's metadata, storage "
                                      "class, website redirect location or encryption attributes.", "CopyObject",
                                      400)
                result = self.router.copy(src, dst)
        committed = self.router.lookup(dst)
        modified = committed.updated_at if committed is not None else utcnow()
        return {"CopyObjectResult": {"ETag": quote_etag(result.etag), "LastModified": modified},
                "ResponseMetadata": write_metadata(result)}

    def _copy_source(self, source: Any) -> tuple[str, str]:
        if isinstance(source, Mapping):
            if source.get("VersionId"):
                raise self._shape.error("NotImplemented", "greenroute keeps no object versions", "CopyObject", 501)
            bucket, key = source.get("Bucket"), source.get("Key")
        else:
            text = str(source)
            if "?versionId=" in text:
                raise self._shape.error("NotImplemented", "greenroute keeps no object versions", "CopyObject", 501)
            bucket, _, key = text.lstrip("/").partition("/")
        if not bucket or not key:
            raise self._shape.error("InvalidArgument", "Copy Source must mention the source bucket and key: "
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
        return self._reads.read("GetObject", params)

    def head_object(self, **params: Any) -> dict[str, Any]:
        """A logical object's size, etag, modification time and metadata (a missing key is ``404``)."""
        return self._reads.read("HeadObject", params)

    #: boto3's managed downloads, with their ``head_object`` and ranged ``get_object`` calls routed.
    download_file = managed_transfer(boto3.s3.inject.download_file)
    download_fileobj = managed_transfer(boto3.s3.inject.download_fileobj)

    # -- deletes --------------------------------------------------------------------------------

    def delete_object(self, **params: Any) -> dict[str, Any]:
        """Delete a logical object and its catalog entry; a missing key succeeds, as on S3."""
        self._shape.check("DeleteObject", params)
        entry = self._delete(params["Bucket"], params["Key"], "DeleteObject")
        backend = entry.backend_id if entry is not None else None
        return {"ResponseMetadata": response_metadata(204, backend_id=backend,
                                                       location=entry.url if entry is not None else None)}

    def _delete(self, bucket: str, key: str, operation: str) -> CatalogEntry | None:
        path = f"{bucket}/{key}"
        entry = self.router.lookup(path)
        if entry is None:
            return None
        with self._shape.errors(operation, key, backend_id=entry.backend_id):
            try:
                self.router.delete(path)
            except FileNotFoundError:  # deleted by someone else meanwhile
                return None
        return entry

    def delete_objects(self, **params: Any) -> dict[str, Any]:
        """Delete up to 1000 logical objects; each failure is reported in ``Errors``."""
        self._shape.check("DeleteObjects", params)
        request = params["Delete"]
        objects = list(request.get("Objects") or [])
        if not objects or len(objects) > _MAX_DELETE_KEYS:
            raise self._shape.error("MalformedXML", "The XML you provided was not well-formed or did not validate "
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
        response: dict[str, Any] = {"ResponseMetadata": response_metadata(200)}
        if deleted:
            response["Deleted"] = deleted
        if errors:
            response["Errors"] = errors
        return response

    # -- listings -------------------------------------------------------------------------------

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        """A page of a logical bucket, from the catalog, merged across backends in key order."""
        self._shape.check("ListObjectsV2", params)
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
                contents.append({"Key": key, "LastModified": entry.updated_at, "ETag": quote_etag(entry.etag),
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
        response["ResponseMetadata"] = response_metadata(200)
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
            raise self._shape.error("InvalidArgument", "The continuation token provided is incorrect", "ListObjectsV2",
                              400, ArgumentName="continuation-token") from exc
        if raw[:1] not in ("k", "p"):
            raise self._shape.error("InvalidArgument", "The continuation token provided is incorrect", "ListObjectsV2",
                              400, ArgumentName="continuation-token")
        return raw[1:], raw[0] == "p"

    def get_paginator(self, operation_name: str) -> Any:
        """boto3's own paginator; ``list_objects_v2`` pages through this client, others pass through."""
        if operation_name != "list_objects_v2":
            return self._default.get_paginator(operation_name)
        config = s3_model("paginators-1")["pagination"]["ListObjectsV2"]
        model = self.meta.service_model.operation_model("ListObjectsV2")
        return botocore.paginate.Paginator(self.list_objects_v2, config, model)

    def can_paginate(self, operation_name: str) -> bool:
        """Whether ``operation_name`` has a paginator."""
        return bool(self._default.can_paginate(operation_name))

    def head_bucket(self, **params: Any) -> dict[str, Any]:
        """A logical bucket always exists: it is a namespace, created by its first object."""
        self._shape.check("HeadBucket", params)
        return {"ResponseMetadata": response_metadata(200)}

    def get_waiter(self, waiter_name: str) -> Any:
        """botocore's waiter, polling this client (object and bucket waiters) or the default one."""
        if waiter_name not in OBJECT_WAITERS:
            return self._default.get_waiter(waiter_name)
        model = botocore.waiter.WaiterModel(s3_model("waiters-2"))
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
            entry = self._reads.lookup(operation, params.get("Bucket", ""), params.get("Key", ""))
            physical = self._real.physical(entry)
            if physical is None:
                raise self._shape.error("NotImplemented", f"presigned URLs need an S3 backend; {entry.path} is on "
                                  f"{entry.backend_id}", operation, 501, backend_id=entry.backend_id,
                                  location=entry.url)
            client, bucket, key = physical
            params.update(Bucket=bucket, Key=key)
            return str(client.generate_presigned_url(ClientMethod, Params=params, ExpiresIn=ExpiresIn,
                                                     HttpMethod=HttpMethod))
        if ClientMethod in UNSIGNABLE:
            raise self._shape.error("NotImplemented", f"a presigned {ClientMethod} would bypass greenroute's placement "
                              "and catalog", ClientMethod, 501)
        return str(self._default.generate_presigned_url(ClientMethod, Params=Params, ExpiresIn=ExpiresIn,
                                                        HttpMethod=HttpMethod))

    def generate_presigned_post(self, Bucket: str, Key: str, **kwargs: Any) -> NoReturn:
        """Refused: a presigned POST would write around greenroute's placement and catalog."""
        raise self._shape.error("NotImplemented", "a presigned POST would bypass greenroute's placement and catalog",
                          "PostObject", 501)


def _file_size(filename: str | os.PathLike[str]) -> int | None:
    try:
        return os.path.getsize(filename)
    except (OSError, TypeError, ValueError):
        return None  # boto3 itself reports a missing file


def _remaining(fileobj: Any) -> int | None:
    """How many bytes a seekable file object has left, without moving it (``None`` when it cannot tell)."""
    try:
        if not fileobj.seekable():
            return None
        here = fileobj.tell()
        end = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(here)
    except (AttributeError, OSError, ValueError):
        return None
    return int(end) - int(here)
