"""``greenroute demo`` end to end, on local directories and the embedded data.

The folder tests never point the demo at the real ``/``, home or working folder: ``$HOME`` and the
working folder are temporary ones, and ``/`` is checked only through :func:`check_demo_dir`, which
deletes nothing whatever it decides.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.cli import main
from greenroute.demo import BASELINE, MARKER, NAMESPACES, check_demo_dir, demo_backends, run_demo
from greenroute.embedded import embedded_data
from greenroute.errors import ConfigError
from greenroute.model import Provider


def test_demo_writes_places_reports_and_verifies(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    report = run_demo(tmp_path / "demo", files=200, console=console)
    assert report.files == 200
    assert report.verified == 25
    assert report.sources == {"embedded"} and report.signal == "average"
    assert sum(int(v[0]) for v in report.per_backend.values()) == 200
    assert len(report.per_backend) >= 3
    assert 0 < report.write_gco2e < report.baseline_write_gco2e
    assert 0 < report.gco2e_month < report.baseline_gco2e_month
    text = console.export_text()
    assert "embedded annual averages" in text and f"all to {BASELINE} instead" in text and "saved" in text

    catalog = SqliteCatalog(tmp_path / "demo" / "catalog.db")
    entries = catalog.list()
    catalog.close()
    assert len(entries) == 200
    for entry in entries:
        allowed = NAMESPACES[entry.path.split("/", 1)[0]][0]
        assert not allowed or entry.backend_id in allowed, entry  # residency held
        assert (tmp_path / "demo" / entry.backend_id / entry.path).is_file()
    sizes = [e.size for e in entries]
    assert min(sizes) < 100_000 and max(sizes) > 8_000_000  # kB to tens of MB


def test_demo_is_repeatable(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "d", files=200, console=Console(file=io.StringIO()))
    second = run_demo(tmp_path / "d", files=200, console=Console(file=io.StringIO()))
    assert first.per_backend.keys() == second.per_backend.keys()
    assert first.bytes_written == second.bytes_written
    assert (tmp_path / "d" / MARKER).is_file()


# -- the demo deletes only what it wrote (issue 17) -------------------------------------------------


def _quiet() -> Console:
    return Console(file=io.StringIO())


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary $HOME, and a temporary working folder (``work``) beside it, so no test can reach the real ones."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path / "work")
    assert Path.home() == home
    return home


def test_an_unrelated_folder_survives(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The report: mkdir -p rr/mydata && echo precious > rr/mydata/keep.txt; greenroute demo --dir rr
    rr = home.parent / "work" / "rr"
    (rr / "mydata").mkdir(parents=True)
    (rr / "mydata" / "keep.txt").write_text("precious\n")
    assert main(["demo", "--dir", "rr", "--files", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing rr" in err and MARKER in err
    assert _files(rr) == {"mydata/keep.txt": b"precious\n"}


def test_a_folder_named_like_the_demos_own_files_is_still_refused(home: Path) -> None:
    folder = home / "looks-like-a-demo"
    (folder / "aws-us-east-1").mkdir(parents=True)
    (folder / "aws-us-east-1" / "data.csv").write_text("mine")
    (folder / "catalog.db").write_text("mine too")
    (folder / MARKER).write_text("not the demo's marker")  # a file of that name the demo did not write
    before = _files(folder)
    with pytest.raises(ConfigError, match=r"has no \.greenroute-demo file"):
        run_demo(folder, files=1, console=_quiet())
    assert _files(folder) == before


def test_home_is_refused_even_when_it_carries_the_marker(home: Path, tmp_path: Path) -> None:
    run_demo(tmp_path / "elsewhere", files=1, console=_quiet())  # a real marker, to copy into $HOME
    (home / MARKER).write_bytes((tmp_path / "elsewhere" / MARKER).read_bytes())
    (home / "aws-us-east-1").mkdir()
    (home / "aws-us-east-1" / "thesis.tex").write_text("years of work")
    (home / "catalog.db").write_text("someone's database")
    before = _files(home)
    for folder in (home, Path("~").expanduser(), home / "looks-like-a-demo" / ".."):
        with pytest.raises(ConfigError, match="the home folder"):
            run_demo(folder, files=1, console=_quiet())
    (tmp_path / "link-to-home").symlink_to(home)
    with pytest.raises(ConfigError, match="the home folder"):
        run_demo(tmp_path / "link-to-home", files=1, console=_quiet())
    assert _files(home) == before


def test_a_folder_above_home_is_refused(home: Path, tmp_path: Path) -> None:
    (home / "file.txt").write_text("kept")
    with pytest.raises(ConfigError, match="above the home folder"):
        check_demo_dir(home.parent)
    with pytest.raises(ConfigError, match="above the home folder"):
        run_demo(home.parent, files=1, console=_quiet())
    assert (home / "file.txt").read_text() == "kept" and (tmp_path / "work").is_dir()


def test_the_working_folder_and_its_parents_are_refused(home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work" / "inner"
    work.mkdir()
    run_demo(tmp_path / "elsewhere", files=1, console=_quiet())
    for folder in (work, work.parent):  # even marked ones
        (folder / MARKER).write_bytes((tmp_path / "elsewhere" / MARKER).read_bytes())
        (folder / "catalog.db").write_text("keep")
    monkeypatch.chdir(work)
    before = _files(tmp_path)
    for folder in (".", str(work), "..", str(work.parent)):
        assert main(["demo", "--dir", folder, "--files", "1"]) == 2
        assert "refusing" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="the current folder"):
        check_demo_dir(Path("."))
    with pytest.raises(ConfigError, match="above the current one"):
        check_demo_dir(Path(".."))
    assert _files(tmp_path) == before


def test_the_filesystem_root_is_refused() -> None:
    # Only the check is called with "/": it creates and deletes nothing whatever it decides.
    with pytest.raises(ConfigError, match="filesystem root"):
        check_demo_dir(Path("/"))
    with pytest.raises(ConfigError, match="filesystem root"):
        check_demo_dir(Path("/tmp/.."))


def test_a_file_is_refused(home: Path) -> None:
    (home / "a-file").write_text("data")
    with pytest.raises(ConfigError, match="not a folder"):
        run_demo(home / "a-file", files=1, console=_quiet())
    assert (home / "a-file").read_text() == "data"


def test_a_second_run_in_its_own_folder_replaces_only_what_the_demo_wrote(home: Path) -> None:
    folder = home / "demo"
    folder.mkdir()  # an existing empty folder is fine
    first = run_demo(folder, files=30, console=_quiet())
    assert (folder / MARKER).is_file()
    (folder / "my-notes.txt").write_text("written beside the demo's files")
    second = run_demo(folder, files=10, seed=8, console=_quiet())
    assert second.files == 10 and second.verified == 10
    assert (folder / "my-notes.txt").read_text() == "written beside the demo's files"
    catalog = SqliteCatalog(folder / "catalog.db")
    try:
        assert len(catalog.list()) == 10  # the first run's 30 entries are gone with its catalog
    finally:
        catalog.close()
    stored = [p for p in folder.rglob("*.bin")]
    assert len(stored) == 10 and first.files == 30


def test_demo_backends_are_modelled_as_the_cloud_they_name(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", files=200, console=_quiet())
    expected_replication = {Provider.S3: 6.0, Provider.GCS: 2.0, Provider.AZURE: 3.0, Provider.FILE: 1.0}
    data = embedded_data()
    for backend in demo_backends(tmp_path / "demo"):
        modelled = report.modelled_as[backend.id]
        assert modelled["provider"] == backend.provider.value
        assert modelled["replication"] == expected_replication[backend.provider]
        assert backend.root.startswith("file://")  # simulated on a local folder
        if backend.id not in report.per_backend:
            continue
        _, size, _, month = report.per_backend[backend.id]
        intensity = (data.zone(backend.grid_zone) if backend.grid_zone else data.region(backend.region))
        g_per_kwh = intensity.carbon_intensity_g_per_kwh
        assert month == pytest.approx(size / 1e12 * 0.65 * 730 * modelled["replication"] * backend.pue
                                      * g_per_kwh / 1000, rel=1e-9)
    assert {b.provider for b in demo_backends(tmp_path)} == {Provider.S3, Provider.GCS, Provider.AZURE,
                                                             Provider.FILE}
    assert report.to_dict()["simulated_on"] == "local folders"


def test_demo_prints_no_zero_amounts_and_one_unit(tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    run_demo(tmp_path / "demo", files=5, console=console)
    text = console.export_text()
    assert "0.0000" not in text
    units = {u for u in ("kgCO2e", " gCO2e", "mgCO2e", "µgCO2e", "ngCO2e") if u in text}
    assert len(units) == 1, text
    assert "simulated on local folders" in text


def test_demo_refuses_no_files(tmp_path: Path) -> None:
    for files in (0, -5):
        with pytest.raises(ConfigError, match="at least 1 file"):
            run_demo(tmp_path / "demo", files=files, console=_quiet())
    assert not (tmp_path / "demo").exists()
