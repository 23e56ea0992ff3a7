"""Request and response shaping for :class:`~greenroute.adapters.boto3.client.GreenS3Client`.

What turns a boto3 call into a router call and the router's answer back into boto3's:

* S3's parameter rules: validation as boto3 does it client-side, and the parameters greenroute
  refuses rather than drops (:meth:`Shaper.check`);
* request bodies as the router takes them (:func:`payload`, spooling only a one-way stream, so that
  a ``put_object`` can fail over) and callers' metadata as greenroute stores it (:func:`user_metadata`);
* boto3's response shapes (:func:`response_metadata`, :func:`write_metadata`, quoted ETags) and
  errors: ``ClientError`` with S3's codes, greenroute's own error kept as ``__cause__``
  (:meth:`Shaper.errors`).
"""

from __future__ import annotations

import contextlib
import copy as python_copy
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn, cast

import botocore.exceptions  # type: ignore[import-untyped]
import botocore.validate  # type: ignore[import-untyped]

from greenroute.errors import (
    AllBackendsFailedError,
    InvalidMetadataError,
    InvalidPathError,
    MetadataNotSupportedError,
    NoEligibleBackendError,
    TargetUnavailableError,
)
from greenroute.model import CatalogEntry
from greenroute.router import WriteResult, validate_path

__all__ = [
    "COPY_CHUNK",
    "MIB",
    "BodyAdapter",
    "RoutedRequest",
    "Shaper",
    "payload",
    "quote_etag",
    "response_metadata",
    "spooler",
    "user_metadata",
    "write_metadata",
    "write_response",
]

MIB = 2**20
#: How much of a one-way body is copied at a time.
COPY_CHUNK = MIB
#: botocore's own client-side rule for bucket names (``botocore.handlers.VALID_BUCKET``); ARNs are
#: physical, so they are not logical namespaces.
_BUCKET = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")
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
#: Writes conditional on the current object's ETag (not every backend can check one) and reads of one
#: part of a physical multipart upload (the physical parts are not the caller's): refused.
_REFUSED_ON_WRITE = frozenset({"IfMatch"})
_REFUSED_ON_READ = frozenset({"PartNumber"})
#: Where S3 takes ``IfNoneMatch="*"`` (create only), routed as an exclusive create; any other value,
#: or the parameter on another write, is refused.
_EXCLUSIVE_WRITES = frozenset({"PutObject", "CompleteMultipartUpload"})
#: Values of otherwise refused parameters that are what S3 does anyway.
_HARMLESS = {"ACL": "private", "ServerSideEncryption": "AES256"}


# -- responses ----------------------------------------------------------------------------------


def quote_etag(etag: str | None) -> str:
    """``etag`` in double quotes, as S3 sends it (``'""'`` when there is none)."""
    return f'"{etag.strip(chr(34))}"' if etag else '""'


def response_metadata(status: int, *, backend_id: str | None = None, location: str | None = None,
                      **extra: Any) -> dict[str, Any]:
    """A ``ResponseMetadata``, naming the backend and physical location when there is one."""
    # 16 random hex digits, as S3's request ids look; os.urandom is several times cheaper than uuid4 here
    md: dict[str, Any] = {"RequestId": os.urandom(8).hex().upper(), "HostId": "", "HTTPStatusCode": status,
                          "HTTPHeaders": {}, "RetryAttempts": 0}
    if backend_id is not None:
        md["GreenrouteBackend"] = backend_id
    if location is not None:
        md["GreenrouteLocation"] = location
    md.update(extra)
    return md


def write_response(result: WriteResult, **fields: Any) -> dict[str, Any]:
    """The response to a routed write: ``fields``, the ``ETag`` and the ``ResponseMetadata``.

    The ``ETag`` is the one the target returned with the write, as the router reports it (``""``
    from targets that return none); nothing is asked of the catalog or the target afterwards.
    """
    return {**fields, "ETag": quote_etag(result.etag), "ResponseMetadata": write_metadata(result)}


def write_metadata(result: WriteResult, status: int = 200) -> dict[str, Any]:
    """The ``ResponseMetadata`` of a routed write: where it went, its decision and its carbon."""
    return response_metadata(status, backend_id=result.backend_id, location=result.url,
                             GreenrouteDecision=result.decision.decision_id,
                             GreenrouteWriteGco2e=result.write_gco2e, GreenrouteGco2eMonth=result.gco2e_month,
                             GreenrouteFailovers=list(result.failovers))


# -- requests -----------------------------------------------------------------------------------


def user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's metadata as greenroute stores it: lowercased keys (as S3 does), without ``greenroute_*``."""
    return {k.lower(): v for k, v in (metadata or {}).items() if not k.lower().startswith("greenroute_")}


@dataclass(frozen=True, slots=True)
class RoutedRequest:
    """What ``request-created`` handlers see of a routed call: its body (s3transfer signals on it)."""

    body: Any
    method: str = "PUT"
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


class BodyAdapter(io.RawIOBase):
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


def spooler(directory: str | None, memory_bytes: int) -> Callable[[], IO[bytes]]:
    """A factory of spools: in memory up to ``memory_bytes``, then a temporary file in ``directory``."""

    def spool() -> IO[bytes]:
        return cast(IO[bytes], tempfile.SpooledTemporaryFile(max_size=memory_bytes, dir=directory))

    return spool


def payload(body: Any, spool: Callable[[], IO[bytes]]) -> tuple[bytes | IO[bytes], IO[bytes] | None]:
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
        return cast(IO[bytes], BodyAdapter(body)), None
    spooled = spool()  # a one-way stream: spooled so the write can fail over
    shutil.copyfileobj(body, spooled, COPY_CHUNK)
    spooled.seek(0)
    return spooled, spooled


# -- checks and errors --------------------------------------------------------------------------


class Shaper:
    """S3's parameter checks and boto3's errors, with the model and exception classes of ``client``.

    Args:
        client: The real boto3 client whose service model validates requests and whose
            ``exceptions`` build errors (so ``except s3.exceptions.NoSuchKey`` works).
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def error(self, code: str, message: str, operation: str, status: int, *,
              backend_id: str | None = None, location: str | None = None, **fields: str) -> Any:
        """A ``ClientError`` (its modelled subclass when S3 has one) shaped as boto3 raises it."""
        response = {"Error": {"Code": code, "Message": message, **fields},
                    "ResponseMetadata": response_metadata(status, backend_id=backend_id, location=location)}
        return self._client.exceptions.from_code(code)(response, operation)

    def check(self, operation: str, params: dict[str, Any], *, writing: bool = False,
              reading: bool = False) -> dict[str, Any]:
        """Validate ``params`` as boto3 would, then refuse what greenroute cannot honour."""
        shape = self._client.meta.service_model.operation_model(operation).input_shape
        botocore.validate.validate_parameters(params, shape)
        bucket = params.get("Bucket")
        if isinstance(bucket, str) and not _BUCKET.match(bucket):
            raise botocore.exceptions.ParamValidationError(
                report=f'Invalid bucket name "{bucket}": Bucket name must match the regex "{_BUCKET.pattern}"')
        refused = sorted(name for name, value in params.items()
                         if (name in _REFUSED or (writing and name in _REFUSED_ON_WRITE)
                             or (reading and name in _REFUSED_ON_READ)
                             or (writing and name == "IfNoneMatch"
                                 and (operation not in _EXCLUSIVE_WRITES or value != "*"))
                             or (name in _HARMLESS and value != _HARMLESS[name])))
        if refused:
            raise self.error("NotImplemented", f"greenroute does not support {', '.join(refused)} (it cannot "
                             "honour them on every backend)", operation, 501)
        return params

    def write_path(self, operation: str, bucket: str, key: str) -> str:
        """The logical path a write of ``key`` goes to (``InvalidArgument`` when greenroute cannot store it)."""
        try:
            return validate_path(f"{bucket}/{key}")
        except InvalidPathError as exc:
            raise self.error("InvalidArgument", f"greenroute cannot store key {key!r}: {exc.why}", operation,
                             400, ArgumentName="Key", ArgumentValue=key) from exc

    @contextlib.contextmanager
    def errors(self, operation: str, key: str | None = None, *, missing: str = "NoSuchKey",
               backend_id: str | None = None) -> Iterator[None]:
        """Raise greenroute's errors inside as ``ClientError`` with S3's codes, keeping the cause."""
        try:
            yield
        except botocore.exceptions.ClientError:
            raise
        except (InvalidPathError, InvalidMetadataError) as exc:
            raise self.error("InvalidArgument", str(exc), operation, 400, backend_id=backend_id) from exc
        except NoEligibleBackendError as exc:
            raise self.error("InvalidRequest", str(exc), operation, 400, backend_id=backend_id) from exc
        except FileExistsError as exc:  # only an exclusive create (IfNoneMatch="*") raises it
            raise self.error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                             operation, 412, backend_id=backend_id, Condition="If-None-Match") from exc
        except FileNotFoundError as exc:
            raise self.missing(missing, operation, key, backend_id=backend_id) from exc
        except PermissionError as exc:
            raise self.error("AccessDenied", str(exc), operation, 403, backend_id=backend_id) from exc
        except (TargetUnavailableError, AllBackendsFailedError) as exc:
            raise self.error("ServiceUnavailable", str(exc), operation, 503, backend_id=backend_id) from exc
        except MetadataNotSupportedError as exc:
            raise self.error("InvalidArgument", str(exc), operation, 400, backend_id=backend_id) from exc
        except OSError as exc:
            raise self.error("InternalError", str(exc), operation, 500, backend_id=backend_id) from exc
        except KeyError as exc:  # the catalog names a backend that is no longer configured
            raise self.error("InternalError", f"backend {exc} is not configured", operation, 500,
                             backend_id=backend_id) from exc

    def missing(self, code: str, operation: str, key: str | None, *, backend_id: str | None = None) -> Any:
        """The error for a missing key (``NoSuchKey``), bucket (``NoSuchBucket``) or HEAD target (``404``)."""
        if code == "404":  # HEAD has no body, so S3 answers with the bare status
            return self.error("404", "Not Found", operation, 404, backend_id=backend_id)
        if code == "NoSuchBucket":
            return self.error(code, "The specified bucket does not exist", operation, 404, backend_id=backend_id)
        return self.error(code, "The specified key does not exist.", operation, 404, backend_id=backend_id,
                          Key=key or "")

    def from_physical(self, exc: Any, operation: str, key: str, entry: CatalogEntry) -> NoReturn:
        """Re-raise a real client's ``ClientError`` about a physical object in logical terms."""
        response = python_copy.deepcopy(exc.response)
        error = response.setdefault("Error", {})
        if "Key" in error:
            error["Key"] = key
        response.setdefault("ResponseMetadata", {}).update(GreenrouteBackend=entry.backend_id,
                                                           GreenrouteLocation=entry.url)
        code = str(error.get("Code", ""))
        raise self._client.exceptions.from_code(code)(response, operation) from exc
