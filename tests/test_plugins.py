"""Entry-point lookups: each group scanned once, missing names, broken adapters, newly installed ones."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenroute.plugins import _group, clear_entry_point_cache, entry_point_names, load_entry_point

GROUP = "greenroute.test_plugins"


def test_installed_targets_load_and_unknown_names_are_none() -> None:
    from greenroute.adapters.storage.memory import from_backend

    assert load_entry_point("greenroute.targets", "memory") is from_backend
    assert load_entry_point("greenroute.targets", "no-such-provider") is None
    assert {"memory", "file", "s3"} <= set(entry_point_names("greenroute.targets"))


def test_a_group_is_scanned_once() -> None:
    clear_entry_point_cache()
    for _ in range(5):
        load_entry_point("greenroute.catalogs", "sqlite")
        load_entry_point("greenroute.catalogs", "nothing")
    info = _group.cache_info()
    assert (info.misses, info.hits) == (1, 9)


@pytest.fixture
def fake_distribution(tmp_path: Path) -> Iterator[Path]:
    """A distribution on sys.path that declares two entry points in GROUP: one good, one whose module is gone."""
    info = tmp_path / "greenroute_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greenroute-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\ngood = greenroute.plugins:entry_point_names\nbroken = greenroute_gone_module:factory\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        clear_entry_point_cache()


def test_new_distributions_are_seen_after_clearing_and_import_errors_propagate(fake_distribution: Path) -> None:
    clear_entry_point_cache()
    sys.path.remove(str(fake_distribution))
    assert load_entry_point(GROUP, "good") is None  # not installed yet, and now cached as such
    sys.path.insert(0, str(fake_distribution))
    assert load_entry_point(GROUP, "good") is None
    clear_entry_point_cache()
    assert load_entry_point(GROUP, "good") is entry_point_names
    assert entry_point_names(GROUP) == ("broken", "good")
    with pytest.raises(ImportError, match="greenroute_gone_module"):
        load_entry_point(GROUP, "broken")
