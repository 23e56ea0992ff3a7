"""``greenroute demo``: the main job, end to end, on local folders and the embedded data.

It sets up eight backends named after real cloud regions and one on-prem site, each simulated on
a local folder but modelled as the cloud it names: its provider's replication factor (S3 6, GCS 2,
Azure 3, as Cloud Carbon Footprint counts them), its published PUE and renewable figures, and its
region's grid. It writes a generated dataset of mixed sizes through
:class:`~greenroute.router.GreenRouter`, and reports where each file went, the gCO2e of the writes
and per month at rest, and the saving against writing everything to us-east-1. Then it reads a
sample back through the catalog and checks the bytes.

Namespaces carry residency rules, as real data does: ``eu-customers/`` stays in the EU,
``us-analytics/`` in the US, ``lab/`` on premises, and ``shared/`` may go anywhere.

The demo deletes only what it wrote. It marks its folder with a :data:`MARKER` file, and on a later
run clears only a marked folder, and only the backend folders and catalog it writes there. It
refuses an existing non-empty folder without the marker, and always refuses the filesystem root,
the home folder, the current folder and every folder above them.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._format import mass_unit, sig
from .carbon import CarbonModel
from .config import GreenrouteConfig, load_config
from .errors import ConfigError
from .model import Backend, Provider
from .placement import GreenPlacementService
from .ports import StorageTarget
from .profiles import FLEET_PUE, profile_for
from .router import GreenRouter, catalog_from_url, target_from_entry_point
from .signals import GridSignals

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["MARKER", "DemoReport", "check_demo_dir", "demo_backends", "run_demo"]

BASELINE = "aws-us-east-1"

#: The file that marks a folder as the demo's own; only a folder holding it is ever cleared.
MARKER = ".greenroute-demo"
_MARKER_TEXT = ("This folder was made by `greenroute demo`. A later demo run here deletes the backend folders\n"
                "and the catalog it wrote, and nothing else. Delete this file to keep the demo away.\n")
_CATALOG_FILES = ("catalog.db", "catalog.db-wal", "catalog.db-shm", "catalog.db-journal")

#: Namespace -> the backends it may use (residency), and how many files of each size class it gets.
NAMESPACES: dict[str, tuple[tuple[str, ...], float]] = {
    "eu-customers": (("aws-eu-north-1", "azure-westeurope", "aws-eu-central-1"), 0.3),
    "us-analytics": (("aws-us-east-1", "aws-us-west-2", "gcp-us-central1"), 0.3),
    "lab": (("on-prem",), 0.1),
    "shared": ((), 0.3),
}

_PROVIDER_NAMES = {Provider.S3: "S3", Provider.GCS: "GCS", Provider.AZURE: "Azure", Provider.FILE: "local disk",
                   Provider.MEMORY: "memory"}


def demo_backends(root: Path) -> list[Backend]:
    """Backends named after six real regions and one on-prem site, each on a local folder under ``root``.

    Each keeps the provider it names (so the carbon model counts that provider's replication) and
    its published PUE and renewable share; :func:`run_demo` stores their objects in local folders.
    """

    def local(profile_id: str) -> Backend:
        p = profile_for(profile_id)
        return Backend(id=p.backend_id, provider=p.provider, region=p.region, root=_file_url(root / p.backend_id),
                       pue=p.pue, renewable_pct=p.renewable_pct, wue=p.wue, grid_zone=p.grid_zone)

    aws_pue = FLEET_PUE[Provider.S3][0]  # AWS global PUE, 2024; both regions are on AWS's 2022 100 % list
    extra = [
        Backend(id=f"aws-{region}", provider=Provider.S3, region=region, root=_file_url(root / f"aws-{region}"),
                pue=aws_pue, renewable_pct=100.0)
        for region in ("us-east-1", "eu-central-1")
    ]
    profiles = [local(p) for p in ("aws-us-west-2", "aws-eu-north-1", "azure-westeurope", "gcp-us-central1", "on-prem")]
    return sorted([*profiles, *extra], key=lambda b: b.id)


def _local_target(backend: Backend) -> StorageTarget:
    """The local-folder target that simulates ``backend``, whatever provider it is modelled as."""
    return target_from_entry_point(replace(backend, provider=Provider.FILE))


@dataclass(slots=True)
class DemoReport:
    """What the demo did, for the printed summary, ``--json`` and tests.

    ``per_backend`` maps each backend id to ``[files, bytes, write gCO2e, gCO2e per month]``;
    ``modelled_as`` maps it to its provider, replication factor and PUE; ``fallback_reasons`` counts
    how many decisions gave each reason for not using a live source.
    """

    files: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    root: str = ""
    per_backend: dict[str, list[float]] = field(default_factory=dict)
    modelled_as: dict[str, dict[str, Any]] = field(default_factory=dict)
    write_gco2e: float = 0.0
    gco2e_month: float = 0.0
    baseline_write_gco2e: float = 0.0
    baseline_gco2e_month: float = 0.0
    verified: int = 0
    signal: str = ""
    sources: set[str] = field(default_factory=set)
    live: bool = False
    fallback_reasons: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``greenroute demo --json`` prints)."""
        saved = self.baseline_write_gco2e - self.write_gco2e
        return {
            "root": self.root,
            "simulated_on": "local folders",
            "files": self.files,
            "bytes_written": self.bytes_written,
            "seconds": self.seconds,
            "signal": self.signal,
            "sources": sorted(self.sources),
            "live": self.live,
            "fallback_reasons": dict(self.fallback_reasons),
            "backends": [
                {"id": backend_id, **self.modelled_as.get(backend_id, {}), "files": int(n), "bytes": int(size),
                 "write_gco2e": g, "gco2e_month": gm}
                for backend_id, (n, size, g, gm) in sorted(self.per_backend.items())
            ],
            "write_gco2e": self.write_gco2e,
            "gco2e_month": self.gco2e_month,
            "baseline": {"backend_id": BASELINE, "write_gco2e": self.baseline_write_gco2e,
                         "gco2e_month": self.baseline_gco2e_month},
            "saved": {"write_gco2e": saved, "gco2e_month": self.baseline_gco2e_month - self.gco2e_month,
                      "write_pct": 100 * saved / self.baseline_write_gco2e if self.baseline_write_gco2e else 0.0},
            "verified": self.verified,
        }


def check_demo_dir(root: Path) -> Path:
    """``root``, resolved, if the demo may write (and later clear) it. Creates and deletes nothing.

    Raises:
        ConfigError: ``root`` is the filesystem root, the home folder, the current folder or above
            one of them; or it exists and is not a folder; or it is a non-empty folder without
            the demo's :data:`MARKER`.
    """
    target = root.resolve()
    shown = str(root) if str(root) == str(target) else f"{root} ({target})"
    if target == Path(target.anchor):
        raise ConfigError(f"refusing {shown}: the demo never uses the filesystem root", key="--dir")
    home = _home()
    if home is not None and home.is_relative_to(target):
        what = "the home folder" if home == target else "a folder above the home folder"
        raise ConfigError(f"refusing {shown}: it is {what}; choose a new folder", key="--dir")
    cwd = Path.cwd().resolve()
    if cwd.is_relative_to(target):
        what = "the current folder" if cwd == target else "a folder above the current one"
        raise ConfigError(f"refusing {shown}: it is {what}; choose a new folder", key="--dir")
    if not target.exists():
        if target.is_symlink():
            raise ConfigError(f"refusing {shown}: it is a dangling symbolic link", key="--dir")
        return target
    if not target.is_dir():
        raise ConfigError(f"refusing {shown}: it exists and is not a folder", key="--dir")
    if not _is_marked(target) and any(target.iterdir()):
        raise ConfigError(f"refusing {shown}: it is not empty and has no {MARKER} file, so the demo did not make "
                          "it; the demo deletes only folders it made. Choose a new or empty folder.", key="--dir")
    return target


def _home() -> Path | None:
    try:
        return Path.home().resolve()
    except (RuntimeError, KeyError, OSError):  # no $HOME and no passwd entry
        return None


def _is_marked(folder: Path) -> bool:
    marker = folder / MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        return marker.read_text(encoding="utf-8") == _MARKER_TEXT
    except (OSError, UnicodeDecodeError):
        return False


def _prepare(root: Path, backends: list[Backend]) -> None:
    """Mark ``root`` as the demo's and clear what an earlier run wrote there (only that)."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not _is_marked(root):
        marker.write_text(_MARKER_TEXT, encoding="utf-8")  # first, so an interrupted run still leaves a marked folder
    for name in [*(b.id for b in backends), *_CATALOG_FILES]:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_symlink() or path.exists():
            path.unlink()  # a link is removed, never followed


def run_demo(root: Path, *, files: int = 240, seed: int = 7, live: bool = False,
             config: GreenrouteConfig | None = None, console: Console | None = None,
             quiet: bool = False) -> DemoReport:
    """Run the demo in the folder ``root`` and print its report.

    The folder is checked first (:func:`check_demo_dir`); nothing is deleted unless it is a folder
    an earlier demo run made, and then only what that run wrote.

    Args:
        root: The demo folder; each backend gets a subfolder, the catalog lives beside them.
        files: How many files to write (at least 1; 200 or more is the point).
        seed: Seed of the generated dataset, so runs are comparable.
        live: Use the configured grid sources instead of the embedded annual averages.
        config: The configuration whose grid sources ``live`` uses (default: :func:`load_config`).
        console: Where to print (default: stdout).
        quiet: Print nothing (for ``--json``).

    Raises:
        ConfigError: ``files`` is below 1, or the folder is refused (see :func:`check_demo_dir`).
    """
    if files < 1:
        raise ConfigError(f"expected at least 1 file, got {files}", key="--files")
    root = check_demo_dir(root)
    backends = demo_backends(root)
    _prepare(root, backends)
    out = None if quiet else (console or _console())
    signals = (config or load_config(None)).build_signals() if live else GridSignals([])
    service = GreenPlacementService(backends, signals=signals, carbon_model=CarbonModel())
    router = GreenRouter(service, catalog_from_url(f"sqlite:///{root / 'catalog.db'}"), target_factory=_local_target,
                         baseline=BASELINE)
    try:
        report = _write_and_verify(router, service, files, seed, out)
    finally:
        router.close()
    report.root = str(root)
    report.live = live
    for b in backends:
        report.modelled_as[b.id] = {"provider": b.provider.value, "region": b.region,
                                    "replication": service.carbon_model.replication.get(b.provider, 1.0),
                                    "pue": b.pue}
    if out is not None:
        _print(report, out)
    from .reporting.after_demo import finish_demo  # the ledger's config beside the catalog, and the HTML report

    finish_demo(root, backends, baseline=BASELINE, out=out)
    return report


def _write_and_verify(router: GreenRouter, service: GreenPlacementService, files: int, seed: int,
                      out: Console | None) -> DemoReport:
    rng = random.Random(seed)
    plan = _plan(files, rng)
    report = DemoReport()
    digests: dict[str, str] = {}
    baseline = service.backend(BASELINE)
    baseline_grid = service.get_grid_carbon_data(baseline.region)
    start = time.perf_counter()
    with _progress(out, len(plan)) as advance:
        for path, size, candidates in plan:
            data = rng.randbytes(size)
            result = router.write(path, data, candidates=candidates or None, retention_days=30,
                                  metadata={"demo": "true"})
            digests[path] = hashlib.sha256(data).hexdigest()
            stats = report.per_backend.setdefault(result.backend_id, [0, 0, 0.0, 0.0])
            stats[0] += 1
            stats[1] += size
            stats[2] += result.write_gco2e
            stats[3] += result.gco2e_month
            report.write_gco2e += result.write_gco2e
            report.gco2e_month += result.gco2e_month
            report.signal = result.decision.signal.value
            report.sources.add(result.decision.grid.source.value)
            report.fallback_reasons.update(result.decision.fallback_reasons)
            base = service.carbon_model.estimate(size, provider=baseline.provider, pue=baseline.pue,
                                                 carbon_intensity_g_per_kwh=baseline_grid.carbon_intensity_g_per_kwh,
                                                 retention_days=30)
            report.baseline_write_gco2e += base.write_gco2e
            report.baseline_gco2e_month += base.at_rest_gco2e_per_month
            report.files += 1
            report.bytes_written += size
            advance()
    report.seconds = time.perf_counter() - start
    sample = rng.sample(sorted(digests), k=min(25, len(digests)))
    for path in sample:
        if hashlib.sha256(router.read(path)).hexdigest() != digests[path]:
            raise AssertionError(f"demo read-back mismatch for {path}")
        report.verified += 1
    return report


class _progress:
    """A transient progress bar on ``out``, or nothing when ``out`` is ``None``."""

    def __init__(self, out: Console | None, total: int) -> None:
        self._bar: Any = None
        if out is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("writing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=out, transient=True)
            self._task = self._bar.add_task("write", total=total)

    def __enter__(self) -> Any:
        if self._bar is None:
            return lambda: None
        self._bar.__enter__()
        return lambda: self._bar.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _plan(files: int, rng: random.Random) -> list[tuple[str, int, tuple[str, ...]]]:
    plan: list[tuple[str, int, tuple[str, ...]]] = []
    names = list(NAMESPACES)
    weights = [NAMESPACES[n][1] for n in names]
    for i in range(files):
        namespace = rng.choices(names, weights)[0]
        roll = rng.random()
        if roll < 0.70:
            size = rng.randint(1_000, 100_000)            # KB-sized records
        elif roll < 0.96:
            size = rng.randint(100_000, 2_000_000)        # MB-sized files
        else:
            size = rng.randint(8_000_000, 24_000_000)     # tens of MB
        plan.append((f"{namespace}/batch-{i // 40:02d}/part-{i:04d}.bin", size, NAMESPACES[namespace][0]))
    return plan


def _console() -> Console:
    from rich.console import Console

    return Console()


def _print(report: DemoReport, out: Console) -> None:
    from rich.table import Table

    label = "embedded annual averages" if report.sources == {"embedded"} else ", ".join(sorted(report.sources))
    # One unit for everything printed, so the rows and the totals compare at a glance.
    unit, scale = mass_unit([report.write_gco2e, report.gco2e_month, report.baseline_write_gco2e,
                             report.baseline_gco2e_month])
    table = Table(title=f"Placements (signal: {report.signal}, {label})",
                  caption="simulated on local folders; each backend is modelled as the cloud it names: "
                          "its provider's replication and its PUE")
    for col in ("backend", "modelled as", "files", "MB", f"write {unit}", f"{unit}/month"):
        table.add_column(col, justify="left" if col in {"backend", "modelled as"} else "right")
    for backend_id, (n, size, g, gm) in sorted(report.per_backend.items(), key=lambda kv: -kv[1][0]):
        m = report.modelled_as.get(backend_id, {})
        modelled = (f"{_PROVIDER_NAMES.get(Provider(m['provider']), m['provider'])} x{m['replication']:g}, "
                    f"PUE {m['pue']:g}") if m else ""
        table.add_row(backend_id, modelled, f"{n:.0f}", f"{size / 1e6:.1f}", sig(g / scale), sig(gm / scale))
    out.print(table)
    saved = report.baseline_write_gco2e - report.write_gco2e
    saved_month = report.baseline_gco2e_month - report.gco2e_month
    out.print(f"{report.files} files, {report.bytes_written / 1e6:.1f} MB in {report.seconds:.1f} s "
              f"({report.bytes_written / 1e6 / max(report.seconds, 1e-9):.0f} MB/s) under {report.root}")
    out.print(f"writes: {sig(report.write_gco2e / scale)} {unit}; at rest: {sig(report.gco2e_month / scale)} {unit} "
              "per month")
    out.print(f"all to {BASELINE} instead: {sig(report.baseline_write_gco2e / scale)} {unit}; "
              f"{sig(report.baseline_gco2e_month / scale)} {unit} per month")
    pct = 100 * saved / report.baseline_write_gco2e if report.baseline_write_gco2e else 0.0
    out.print(f"[bold green]saved {sig(saved / scale)} {unit} on the writes ({pct:.0f} %) and "
              f"{sig(saved_month / scale)} {unit} per month at rest[/]")
    out.print(f"read back {report.verified} sampled files through the catalog: bytes verified")
    if report.live and report.fallback_reasons:
        if report.sources == {"embedded"}:
            out.print("[yellow]--live: no live source could answer for every backend, so every decision used the "
                      "embedded annual averages:[/]")
        else:
            out.print("[yellow]--live: some decisions fell back:[/]")
        for reason, count in report.fallback_reasons.items():
            out.print(f"  fallback: {reason}" + (f" ({count} of {report.files} decisions)"
                                                 if count != report.files else ""))

def _file_url(path: Path) -> str:
    return path.resolve().as_uri()

