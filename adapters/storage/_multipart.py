"""What every target's multipart upload shares (:class:`greenroute.ports.MultipartWrite`).

A multipart upload sends each part to the backend as it arrives, in any order and from any thread,
and joins the parts there at :meth:`StagedUpload.complete`; nothing is spooled on the client. Each
provider module subclasses :class:`StagedUpload` with its own staging:

* ``s3``: the bucket's own multipart upload (Create, UploadPart, Complete, Abort);
* ``azure``: one staged block per part (Put Block), committed with the metadata (Put Block List);
* ``gcs``: hidden part objects beside the object, composed into it with the metadata, then deleted;
* ``file``: hidden part files in the object's folder, concatenated into the target's temporary file,
  which gets its metadata and is renamed into place like every other write;
* ``memory``: the parts in memory.

This module holds the shared bookkeeping: part numbers and sizes, the checks S3 makes, the upload's
state, and the mapping of each provider's errors through its target.
"""

from __future__ import annotations

import io
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from greenroute.ports import ObjectInfo

if TYPE_CHECKING:
    from ._fsspec_target import FsspecTarget, Stamp

__all__ = ["MAX_PARTS", "STAGING_PREFIX", "PartReader", "StagedUpload"]

log = logging.getLogger(__name__)

#: S3's largest part number; every target keeps to it.
MAX_PARTS = 10_000
#: How staged parts' names begin where they sit beside objects (GCS; the file target's temporary prefix).
STAGING_PREFIX = ".gr-tmp-"


class StagedUpload:
    """One multipart upload on ``target``; subclasses stage parts (:meth:`_send`) and join them (:meth:`_join`).

    Args:
        target: The target the object goes to (its path mapping, metadata rules and error mapping).
        path: The logical path.
        metadata_at_close: The metadata for a given object size.
        size_hint: The expected size, when known.

    Raises:
        greenroute.errors.MetadataNotSupportedError: The metadata cannot be stored on this target
            (checked before any part is sent).
    """

    def __init__(self, target: FsspecTarget, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                 size_hint: int | None) -> None:
        self.path = path
        self._target = target
        self._full = target._full(path)
        self._metadata_at_close = metadata_at_close
        self._size_hint = size_hint
        #: A token of this upload, for the names of its staged parts.
        self._token = secrets.token_hex(8)
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()
        self._finished = False
        self._upfront = target._prepare_metadata(dict(metadata_at_close(size_hint or 0)))

    def upload_part(self, number: int, data: bytes) -> str | None:
        if not isinstance(number, int) or not 1 <= number <= MAX_PARTS:
            raise ValueError(f"part numbers run from 1 to {MAX_PARTS}, got {number!r}")
        self._check_open()
        with self._target._errors("write", self.path):
            tag = self._send(number, data)
        with self._lock:
            self._sizes[number] = len(data)
        return tag

    def complete(self, parts: Sequence[int]) -> ObjectInfo:
        self._check_open()
        numbers = list(parts)
        if not numbers or any(b <= a for a, b in itertools.pairwise(numbers)):
            raise ValueError(f"the parts to join must be ascending part numbers without repeats, got {numbers}")
        with self._lock:
            missing = [n for n in numbers if n not in self._sizes]
            size = sum(self._sizes.get(n, 0) for n in numbers)
        if missing:
            raise ValueError(f"part {missing[0]} of {self.path} was never uploaded")
        metadata = dict(self._metadata_at_close(size))
        stored = self._target._prepare_metadata(metadata)
        with self._target._errors("write", self.path):
            etag, modified = self._join(numbers, stored, size)
        self._finished = True
        self._clean_up()
        return ObjectInfo(self.path, self._target.url(self.path), size, etag, metadata, modified)

    def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        with self._target._errors("discard", self.path):
            self._drop()

    # -- provider hooks ---------------------------------------------------------------------------

    def _send(self, number: int, data: bytes) -> str | None:
        """Stage part ``number`` on the backend (replacing an earlier one); the backend's tag for it."""
        raise NotImplementedError

    def _join(self, numbers: list[int], stored: dict[str, str], size: int) -> Stamp:
        """Make the object from the parts ``numbers``, in order, carrying ``stored`` (encoded) metadata."""
        raise NotImplementedError

    def _drop(self) -> None:
        """Remove every staged part (abort)."""
        raise NotImplementedError

    def _discard_staged(self) -> None:
        """Remove what staging left after a successful join (default: the same as :meth:`_drop`)."""
        self._drop()

    # -- shared ---------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finished:
            raise ValueError(f"the multipart upload of {self.path} was completed or aborted")

    def _clean_up(self) -> None:
        """Remove staged parts after a join; a failure leaves hidden parts behind and is only logged."""
        try:
            with self._target._errors("clean up", self.path):
                self._discard_staged()
        except OSError as exc:
            log.warning("multipart upload of %s on %s: could not remove its staged parts: %s", self.path,
                        self._target.backend.id, exc)


class PartReader(io.RawIOBase):
    """A part's bytes as a seekable stream that never copies them.

    HTTP clients copy a ``bytes`` or ``BytesIO`` body into a buffer of their own (aiohttp does), so
    a part would be held twice while it is sent; a plain stream is read in chunks instead, and sought
    back for a retry or a checksum.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        n = min(out.nbytes, self._view.nbytes - self._pos)
        out[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._view.nbytes}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos
