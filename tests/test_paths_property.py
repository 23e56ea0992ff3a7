"""Property: distinct logical paths never share a physical object, on every kind of target.

Random valid logical paths (unicode in NFC and in other spellings, spaces, ``%``, ``+``, ``=``,
``~``, dots inside and at the ends of segments, names near each target's length limits) are written
through :class:`~greenroute.GreenRouter` to one backend of each kind: memory, a local folder
(extended attributes and sidecar files), moto S3, the GCS emulator and Azurite. Each example then
checks, on the backend itself, that every distinct logical path has exactly one object of its own
that holds its bytes and names it in ``greenroute_path``, that nothing else is there, and that two
spellings of one name (the router normalises to NFC) are one object. Object stores (and memory) keep
``a`` and ``a/b`` as two objects; a local folder cannot, and refuses the later of the two with
``NotADirectoryError`` or ``IsADirectoryError``, changing nothing. Azure refuses names with U+FFFE or
U+FFFF (``InvalidPathError``), which its XML listings cannot carry.

On the GCS emulator the names stay within Latin-1 once in NFC (``é`` typed either way is in, ``日本``
is out) and hold no ``;``. gcp-storage-emulator sends an object's custom metadata back as
``x-goog-meta-*`` headers on every download, and Python's HTTP server cannot encode a
``greenroute_path`` value beyond Latin-1 there, so it drops the connection (``UnicodeEncodeError``
in its log); and aiohttp sends ``%3B`` in a path as ``;``, which the emulator's ``urlparse`` then
cuts off as URL parameters, so it answers 404 for an object it lists. Both are the emulator's
limits, not the target's.

Bounded and reproducible for CI: 40 examples per target, derandomised, no deadline.
"""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.servers.fixtures import azurite_server, gcs_server, moto_server  # noqa: F401
from tests.servers.local import (
    LocalServer,
    azure_storage_options,
    create_azure_container,
    create_gcs_bucket,
    create_s3_bucket,
    gcs_storage_options,
    s3_storage_options,
)

from greenroute import Backend, GreenPlacementService, GreenRouter, InvalidPathError, Provider
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.router import RESERVED_CHARACTERS

KINDS = ("memory", "file-xattr", "file-sidecar", "s3", "gcs", "azure")
EXAMPLES = 40

#: Characters that make names awkward for one store or another, besides letters and digits.
AWKWARD = " %+=~.-_,;:!@$&'()^`{}|<>\"" + "\u00a0\u3000"
#: Letters with more than one spelling (precomposed, decomposed, compatibility singletons), others, DEL, NEL,
#: a noncharacter XML cannot carry and the last private-use code point.
UNICODE = ("é", "e\u0301", "Å", "\u212b", "A\u030a", "ñ", "n\u0303", "ﬁ", "ß", "Ω", "\u2126", "ǅ", "한",
           "\u1112\u1161\u11ab", "日本", "я", "ع", "🌍", "\u0958", "ḱ", "\u00b4", "\u007f", "\u0085", "\ufffe",
           "\U0010fffd")
#: Code points for the rest: any the router accepts (no C0 controls, surrogates, separators or refused characters).
_ANY = st.characters(min_codepoint=32, exclude_categories=("Cs",), exclude_characters=RESERVED_CHARACTERS + "/\\")


def _piece() -> st.SearchStrategy[str]:
    return st.one_of(st.text(st.sampled_from("abcxyzABC0123456789"), min_size=1, max_size=4),
                     st.sampled_from(AWKWARD), st.sampled_from(UNICODE), st.text(_ANY, min_size=1, max_size=2))


def _latin1(text: str) -> str:
    """``text`` in NFC without ``;`` and the characters beyond Latin-1 (never combining marks): the GCS emulator's."""
    return "".join(ch for ch in unicodedata.normalize("NFC", text) if ord(ch) < 256 and ch != ";")


def _segment(latin1: bool) -> st.SearchStrategy[str]:
    joined = st.lists(_piece(), min_size=1, max_size=6).map("".join)
    if latin1:
        joined = joined.map(lambda s: _latin1(s) or "x")
    return joined.filter(lambda s: unicodedata.normalize("NFC", s) not in (".", ".."))


def _spellings(name: str) -> list[str]:
    """Other ways to write ``name`` that NFC makes equal to it."""
    return sorted({unicodedata.normalize(form, name) for form in ("NFD", "NFC")} - {name})


def _fit(path: str, limit: int, segment_limit: int | None, filler: str) -> str:
    """``path`` with its last segment padded by ``filler`` to close under ``limit`` bytes (and the segment limit)."""
    head, _, last = path.rpartition("/")
    room = limit - len(path.encode())
    if segment_limit is not None:
        room = min(room, segment_limit - len(last.encode()))
    pad = ""
    for ch in itertools.cycle(filler):
        if len((pad + ch).encode()) > room:
            break
        pad += ch
    padded = f"{head}/{last}{pad}" if head else last + pad
    return padded if unicodedata.is_normalized("NFC", padded) else path


@st.composite
def path_sets(draw: st.DrawFn, limit: int, segment_limit: int | None, latin1: bool = False) -> list[str]:
    """3 to 6 logical paths (relative to an example's own namespace), some near the limits, some alike."""
    paths: list[str] = []
    fillers = ["a", "é", "a.b ", "%2F+"] + ([] if latin1 else ["日", "🌍"])
    for _ in range(draw(st.integers(3, 6))):
        segments = draw(st.lists(_segment(latin1), min_size=1, max_size=3))
        path = unicodedata.normalize("NFC", "/".join(segments))
        if draw(st.integers(0, 4)) == 0:  # near the target's limit
            path = _fit(path, limit, segment_limit, draw(st.sampled_from(fillers)))
        paths.append(path)
    if draw(st.booleans()) and paths:  # a near twin of one of them: a dot, a space or a case away
        base = draw(st.sampled_from(paths))
        twist = draw(st.sampled_from([lambda p: p + ".", lambda p: p + " ", lambda p: p.swapcase(),
                                      lambda p: p.replace(" ", "+"), lambda p: p.replace(".", "%2E")]))
        twin = unicodedata.normalize("NFC", twist(base))
        if (not latin1 or _latin1(twin) == twin) and len(twin.encode()) <= limit and (segment_limit is None or all(
                len(s.encode()) <= segment_limit for s in twin.split("/"))) and twin.split("/")[-1] not in (".", ".."):
            paths.append(twin)
    return paths


class Fleet:
    """One router per target kind, writing under a fresh namespace per example."""

    def __init__(self, router: GreenRouter, backend_id: str) -> None:
        self.router = router
        self.backend_id = backend_id
        self.target: Any = router.target(backend_id)
        #: Whether objects are files in folders (``a`` and ``a/b`` cannot both exist).
        self.folders = backend_id.startswith("file")
        #: Whether names stay within Latin-1 and hold no ``;`` (the GCS emulator's downloads; see the docstring).
        self.latin1 = backend_id == "gcs"
        self._count = itertools.count()

    def namespace(self) -> str:
        return f"pp{next(self._count):03d}-{uuid.uuid4().hex[:6]}"

    def limits(self, namespace: str) -> tuple[int, int | None]:
        """The byte budget for what follows ``namespace/`` on this target."""
        return self.target.max_path_bytes - len(namespace) - 1, getattr(self.target, "max_segment_bytes", None)


def _backend(kind: str, tmp_path: Path, server: Callable[[str], LocalServer]) -> Backend:
    name = f"gr-{uuid.uuid4().hex[:16]}"
    if kind == "memory":
        return Backend(id="memory", provider=Provider.MEMORY, region="eu-north-1", root=f"memory://{name}/pp",
                       pue=1.1)
    if kind.startswith("file"):
        store = kind.split("-")[1]
        return Backend(id=kind, provider=Provider.FILE, region="eu-north-1", root=(tmp_path / "root").as_uri(), pue=1.1,
                       storage_options={"metadata_store": store})
    endpoint = server(kind).endpoint
    if kind == "s3":
        create_s3_bucket(endpoint, name)
        return Backend(id="s3", provider=Provider.S3, region="eu-north-1", root=f"s3://{name}/pp", pue=1.15,
                       storage_options=s3_storage_options(endpoint))
    if kind == "gcs":
        create_gcs_bucket(endpoint, name)
        return Backend(id="gcs", provider=Provider.GCS, region="europe-north1", root=f"gs://{name}/pp", pue=1.1,
                       storage_options=gcs_storage_options(endpoint))
    create_azure_container(endpoint, name)
    return Backend(id="azure", provider=Provider.AZURE, region="westeurope", root=f"az://{name}/pp", pue=1.18,
                   storage_options=azure_storage_options(endpoint))


@pytest.fixture(params=KINDS)
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    servers = {"s3": "moto_server", "gcs": "gcs_server", "azure": "azurite_server"}
    backend = _backend(str(request.param), tmp_path,
                       lambda kind: request.getfixturevalue(servers[kind]))  # type: ignore[no-any-return]
    router = GreenRouter(GreenPlacementService([backend]), SqliteCatalog(tmp_path / "catalog.db"))
    yield Fleet(router, backend.id)
    router.close()


def _folder_conflict(path: str, written: dict[str, bytes]) -> type[Exception] | None:
    """The error a local folder gives for ``path`` when an object is above it, or objects are under it."""
    if any(path.startswith(other + "/") for other in written):
        return NotADirectoryError
    if any(other.startswith(path + "/") for other in written):
        return IsADirectoryError
    return None


def _payload(path: str, round_: int) -> bytes:
    return hashlib.sha256(f"{round_}:{path}".encode()).digest() + path.encode() * 2


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_distinct_logical_paths_never_share_an_object(fleet: Fleet, data: st.DataObject) -> None:
    namespace = fleet.namespace()
    limit, segment_limit = fleet.limits(namespace)
    names = data.draw(path_sets(limit, segment_limit, fleet.latin1), label="paths")
    router = fleet.router
    expected: dict[str, bytes] = {}
    for round_, name in enumerate(names):
        path = f"{namespace}/{name}"
        payload = _payload(path, round_)
        refusal = _folder_conflict(path, expected) if fleet.folders else None
        if fleet.backend_id == "azure" and {"\ufffe", "\uffff"} & set(path):
            refusal = InvalidPathError
        if refusal is not None:
            with pytest.raises(refusal):
                router.write(path, payload)
            assert router.lookup(path) is None
            continue
        result = router.write(path, payload)
        assert result.path == path and result.backend_id == fleet.backend_id
        expected[path] = payload
        # Another spelling of the same name is the same logical path: it replaces the bytes in place.
        for other in _spellings(name):
            payload = _payload(path, round_ + 1000)
            assert router.write(f"{namespace}/{other}", payload).path == path
            expected[path] = payload
            assert router.read(f"{namespace}/{other}") == payload

    # Each logical path reads back its own bytes, through the router and from its own object.
    for path, payload in expected.items():
        assert router.read(path) == payload, path
        entry = router.lookup(path)
        assert entry is not None and entry.size == len(payload)
        assert fleet.target.read(path) == payload, path
        assert fleet.target.stat(path).metadata["greenroute_path"] == path

    # On the backend itself: exactly one object per distinct logical path, and nothing else.
    stored = {info.path: info for info in fleet.target.list(f"{namespace}/")}
    assert sorted(stored) == sorted(expected)
    for path, info in stored.items():
        assert info.size == len(expected[path]) and info.metadata["greenroute_path"] == path
    urls = [entry.url for entry in router.list(f"{namespace}/")]
    assert len(urls) == len(set(urls)) == len(expected)
