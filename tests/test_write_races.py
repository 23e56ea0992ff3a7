"""Races between writers of one path that share a catalog, reproduced deterministically.

Two routers stand for two processes: each has its own catalog object on one SQLite file, and both
write to the same local-directory backends. The interleaving is injected with ``HookedCatalog``,
the test's own catalog subclass that runs a hook just before a commit (greenroute's code runs
unpatched). Every test checks the invariant: the catalog names the decision whose bytes the
object holds, with its size, and every acknowledged write is readable or superseded by a later one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from greenroute import Backend, GreenPlacementService, GreenRouter, InvalidPathError, Provider
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.adapters.storage.file import FileTarget
from greenroute.errors import ConcurrentWriteError
from greenroute.model import CatalogEntry, EntryState


class HookedCatalog(SqliteCatalog):
    """A real SQLite catalog that runs ``before_commit`` once, just before its next commit."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.before_commit: Callable[[], None] | None = None

    def commit(self, entry: CatalogEntry, *, expected: str | None, **options: Any) -> Any:
        hook, self.before_commit = self.before_commit, None
        if hook is not None:
            hook()
        return super().commit(entry, expected=expected, **options)


def _backends(root: Path) -> list[Backend]:
    return [Backend(id=name, provider=Provider.FILE, region=region, root=f"file://{root / name}", pue=1.1,
                    renewable_pct=100.0)
            for name, region in (("a", "eu-north-1"), ("b", "us-west-2"))]


RouterFactory = Callable[..., tuple[GreenRouter, HookedCatalog]]


@pytest.fixture
def make_router(tmp_path: Path) -> Iterator[RouterFactory]:
    routers: list[GreenRouter] = []

    def make(on_overwrite: str = "keep") -> tuple[GreenRouter, HookedCatalog]:
        catalog = HookedCatalog(tmp_path / "catalog.db")
        router = GreenRouter(GreenPlacementService(_backends(tmp_path)), catalog, target_factory=FileTarget,
                             on_overwrite=on_overwrite)  # type: ignore[arg-type]
        routers.append(router)
        return router, catalog

    yield make
    for router in routers:
        router.close()


def _assert_entry_matches_object(router: GreenRouter, path: str, data: bytes, decision_id: str) -> None:
    entry = router.lookup(path)
    assert entry is not None
    info = router.target(entry.backend_id).stat(path)
    assert (entry.decision_id, entry.size) == (decision_id, len(data))
    assert info.metadata["greenroute_decision"] == decision_id and info.size == len(data)
    assert router.read(path) == data


def test_replace_across_processes_never_deletes_a_copy_another_write_is_about_to_commit(
        make_router: RouterFactory) -> None:
    """The issue's case: B stores on a; A replaces onto b and deletes "the old copy" on a: B's object."""
    a_router, _ = make_router("replace")
    b_router, b_catalog = make_router("keep")
    first = b_router.write("ns/k", b"original", candidates=["a"])
    results: dict[str, Any] = {}

    def a_writes_between() -> None:
        results["a"] = a_router.write("ns/k", b"from A on b", candidates=["b"])

    b_catalog.before_commit = a_writes_between
    results["b"] = b_router.write("ns/k", b"from B, stored on a", candidates=["a"])

    assert first.backend_id == "a" and results["a"].backend_id == "b" and results["b"].backend_id == "a"
    # B acknowledged last, so B's write holds the path; A's was superseded by it and its copy removed.
    _assert_entry_matches_object(b_router, "ns/k", b"from B, stored on a", results["b"].decision.decision_id)
    _assert_entry_matches_object(a_router, "ns/k", b"from B, stored on a", results["b"].decision.decision_id)
    assert not (Path(str(a_router.target("b").url("ns/k")).removeprefix("file://"))).exists()
    assert [e.path for e in a_router.list()] == ["ns/k"]


def test_keep_mode_rewrites_bytes_another_writer_overwrote_before_this_commit(make_router: RouterFactory) -> None:
    """X stores 2 bytes; Y stores 17 bytes at the same object and commits; X's commit must not claim Y's bytes."""
    x_router, x_catalog = make_router()
    y_router, _ = make_router()
    results: dict[str, Any] = {}

    def y_writes_between() -> None:
        results["y"] = y_router.write("ns/k", b"seventeen bytes!!")

    x_catalog.before_commit = y_writes_between
    results["x"] = x_router.write("ns/k", b"xx")

    assert results["x"].backend_id == results["y"].backend_id == "a"
    # X acknowledged after Y, so X's bytes hold the path: X stored them again before it committed.
    _assert_entry_matches_object(x_router, "ns/k", b"xx", results["x"].decision.decision_id)
    history = list(x_router.catalog.history())
    assert [e.decision_id for e in history] == [results["y"].decision.decision_id, results["x"].decision.decision_id]
    assert history[0].state is EntryState.CLOSED


def test_a_commit_that_lands_while_the_object_holds_a_later_write_is_corrected_by_that_write(
        make_router: RouterFactory) -> None:
    """X stores, Y stores over it, X commits first: the catalog briefly names X; Y's commit puts it right."""
    x_router, x_catalog = make_router()
    y_router, y_catalog = make_router()
    x_stored, y_stored, x_committed = threading.Event(), threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def x_hook() -> None:
        x_stored.set()
        assert y_stored.wait(10)

    def y_hook() -> None:
        y_stored.set()
        assert x_committed.wait(10)

    x_catalog.before_commit, y_catalog.before_commit = x_hook, y_hook
    x = threading.Thread(target=lambda: results.__setitem__("x", x_router.write("ns/k", b"x" * 2)))
    y = threading.Thread(target=lambda: results.__setitem__("y", y_router.write("ns/k", b"y" * 17)))
    x.start()
    assert x_stored.wait(10)
    y.start()
    x.join(10)
    x_committed.set()
    y.join(10)
    assert set(results) == {"x", "y"}
    _assert_entry_matches_object(x_router, "ns/k", b"y" * 17, results["y"].decision.decision_id)


def test_a_stream_whose_bytes_were_overwritten_is_not_acknowledged(make_router: RouterFactory) -> None:
    """A stream cannot store its bytes again: it fails with ConcurrentWriteError, and the catalog stays true."""
    x_router, x_catalog = make_router()
    y_router, _ = make_router()
    results: dict[str, Any] = {}

    def y_writes_between() -> None:
        results["y"] = y_router.write("ns/s", b"y wins")

    x_catalog.before_commit = y_writes_between
    stream = x_router.open("ns/s", "wb")
    stream.write(b"x streamed")
    with pytest.raises(ConcurrentWriteError) as info:
        stream.close()
    assert isinstance(info.value, OSError)
    _assert_entry_matches_object(x_router, "ns/s", b"y wins", results["y"].decision.decision_id)


def test_a_stream_names_its_own_bytes_when_it_stored_last(make_router: RouterFactory) -> None:
    x_router, _ = make_router()
    y_router, y_catalog = make_router()
    holder: dict[str, Any] = {}

    def x_streams_between() -> None:
        with x_router.open("ns/s", "wb") as stream:
            stream.write(b"x streamed")
        holder["x"] = stream

    y_catalog.before_commit = x_streams_between
    result = y_router.write("ns/s", b"y stored first")  # Y's bytes were overwritten by X's stream: Y stores again
    _assert_entry_matches_object(y_router, "ns/s", b"y stored first", result.decision.decision_id)
    assert holder["x"].result is not None  # the stream was acknowledged before Y, and Y superseded it


def test_exclusive_create_reserves_the_path_before_storing(make_router: RouterFactory) -> None:
    x_router, x_catalog = make_router()
    y_router, _ = make_router()
    outcome: dict[str, BaseException] = {}

    def y_tries_to_create_too() -> None:
        try:
            y_router.write("ns/x", b"y", exclusive=True)
        except FileExistsError as exc:
            outcome["y"] = exc

    x_catalog.before_commit = y_tries_to_create_too
    result = x_router.write("ns/x", b"x", exclusive=True)
    assert isinstance(outcome["y"], FileExistsError)
    _assert_entry_matches_object(x_router, "ns/x", b"x", result.decision.decision_id)
    with pytest.raises(FileExistsError):
        y_router.write("ns/x", b"again", exclusive=True)
    with pytest.raises(FileExistsError):
        y_router.open("ns/x", "xb")
    assert x_router.catalog.pending() == []


def test_delete_leaves_an_object_that_a_newer_write_stored(make_router: RouterFactory) -> None:
    x_router, x_catalog = make_router()
    y_router, _ = make_router()
    x_router.write("ns/d", b"old")
    results: dict[str, Any] = {}

    def y_writes_between() -> None:
        results["y"] = y_router.write("ns/d", b"new bytes")

    x_catalog.before_commit = y_writes_between
    x_router.write("ns/other", b"unrelated")  # runs the hook: Y rewrites ns/d meanwhile
    x_router.delete("ns/d")  # deletes Y's entry (the live one) and its object, which holds Y's decision
    assert not x_router.exists("ns/d")
    assert not Path(str(x_router.target("a").url("ns/d")).removeprefix("file://")).exists()


@pytest.mark.parametrize("char", list("?#*[]"))
def test_characters_a_storage_client_would_interpret_are_refused(make_router: RouterFactory, char: str) -> None:
    router, _ = make_router()
    router.write("ns/report.csv", b"important")
    with pytest.raises(InvalidPathError, match="version, fragment or glob"):
        router.write(f"ns/report.csv{char}versionId=1", b"junk")
    assert router.read("ns/report.csv") == b"important"
    assert [e.path for e in router.list()] == ["ns/report.csv"]


@pytest.mark.parametrize(("composed", "decomposed"), [("ns/\u00c5", "ns/\u212b"), ("ns/caf\u00e9", "ns/cafe\u0301")])
def test_unicode_spellings_of_one_name_are_one_logical_path(make_router: RouterFactory, composed: str,
                                                            decomposed: str) -> None:
    router, _ = make_router()
    router.write(decomposed, b"first")
    router.write(composed, b"second")
    assert [e.path for e in router.list()] == [composed]  # stored in NFC
    assert router.read(decomposed) == router.read(composed) == b"second"
    assert router.exists(decomposed)
    files = [p for p in (Path(str(router.target("a").url("ns")).removeprefix("file://"))).iterdir()
             if not p.name.startswith(".")]
    assert [p.name for p in files] == [composed.removeprefix("ns/")]
