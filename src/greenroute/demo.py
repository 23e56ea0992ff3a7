"""``greenroute demo``: the main job, end to end, on local directories and the embedded data.

It sets up local directory backends named after real cloud regions (their published PUE and
renewable figures, their region's grid), writes a generated dataset of mixed sizes through
:class:`~greenroute.router.GreenRouter`, and reports where each file went, the gCO2e of the
writes and per month at rest, and the saving against writing everything to us-east-1. Then it
reads a sample back through the catalog and checks the bytes.

Namespaces carry residency rules, as real data does: ``eu-customers/`` stays in the EU,
``us-analytics/`` in the US, ``lab/`` on premises, and ``shared/`` may go anywhere.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .carbon import CarbonModel
from .config import GreenrouteConfig
from .model import Backend, Provider
from .placement import GreenPlacementService
from .profiles import FLEET_PUE, profile_for
from .router import GreenRouter, catalog_from_url
from .signals import GridSignals

__all__ = ["DemoReport", "demo_backends", "run_demo"]

BASELINE = "aws-us-east-1"

#: Namespace -> the backends it may use (residency), and how many files of each size class it gets.
NAMESPACES: dict[str, tuple[tuple[str, ...], float]] = {
    "eu-customers": (("aws-eu-north-1", "azure-westeurope", "aws-eu-central-1"), 0.3),
    "us-analytics": (("aws-us-east-1", "aws-us-west-2", "gcp-us-central1"), 0.3),
    "lab": (("on-prem",), 0.1),
    "shared": ((), 0.3),
}


def demo_backends(root: Path) -> list[Backend]:
    """Local directory backends named after seven real regions and one on-prem site."""

    def local(profile_id: str) -> Backend:
        p = profile_for(profile_id)
        return Backend(id=p.backend_id, provider=Provider.FILE, region=p.region, root=_file_url(root / p.backend_id),
                       pue=p.pue, renewable_pct=p.renewable_pct, wue=p.wue, grid_zone=p.grid_zone)

    aws_pue = FLEET_PUE[Provider.S3][0]  # AWS global PUE, 2024; both regions are on AWS's 2022 100 % list
    extra = [
        Backend(id=f"aws-{region}", provider=Provider.FILE, region=region, root=_file_url(root / f"aws-{region}"),
                pue=aws_pue, renewable_pct=100.0)
        for region in ("us-east-1", "eu-central-1")
    ]
    profiles = [local(p) for p in ("aws-us-west-2", "aws-eu-north-1", "azure-westeurope", "gcp-us-central1", "on-prem")]
    return sorted([*profiles, *extra], key=lambda b: b.id)


@dataclass(slots=True)
class DemoReport:
    """What the demo did, for the printed summary and for tests."""

    files: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    per_backend: dict[str, list[float]] = field(default_factory=dict)  # id -> [files, bytes, gCO2e, gCO2e/month]
    write_gco2e: float = 0.0
    gco2e_month: float = 0.0
    baseline_write_gco2e: float = 0.0
    baseline_gco2e_month: float = 0.0
    verified: int = 0
    signal: str = ""
    sources: set[str] = field(default_factory=set)


def run_demo(root: Path, *, files: int = 240, seed: int = 7, live: bool = False,
             config: GreenrouteConfig | None = None, console: Console | None = None) -> DemoReport:
    """Run the demo under ``root`` (wiped first) and print its report.

    Args:
        root: The demo folder; each backend gets a subfolder, the catalog lives beside them.
        files: How many files to write (at least 200 is the point).
        seed: Seed of the generated dataset, so runs are comparable.
        live: Use the configured grid sources instead of the embedded annual averages.
        config: The configuration whose grid sources ``live`` uses.
        console: Where to print.
    """
    out = console or Console()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    backends = demo_backends(root)
    signals = config.build_signals() if (live and config is not None) else GridSignals([])
    service = GreenPlacementService(backends, signals=signals, carbon_model=CarbonModel())
    router = GreenRouter(service, catalog_from_url(f"sqlite:///{root / 'catalog.db'}"))
    rng = random.Random(seed)
    plan = _plan(files, rng)
    report = DemoReport()
    digests: dict[str, str] = {}
    baseline = service.backend(BASELINE)
    baseline_grid = service.get_grid_carbon_data(baseline.region)
    start = time.perf_counter()
    with Progress(TextColumn("writing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out, transient=True) as progress:
        task = progress.add_task("write", total=len(plan))
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
            base = service.carbon_model.estimate(size, provider=baseline.provider, pue=baseline.pue,
                                                 carbon_intensity_g_per_kwh=baseline_grid.carbon_intensity_g_per_kwh,
                                                 retention_days=30)
            report.baseline_write_gco2e += base.write_gco2e
            report.baseline_gco2e_month += base.at_rest_gco2e_per_month
            report.files += 1
            report.bytes_written += size
            progress.advance(task)
    report.seconds = time.perf_counter() - start
    sample = rng.sample(sorted(digests), k=min(25, len(digests)))
    for path in sample:
        if hashlib.sha256(router.read(path)).hexdigest() != digests[path]:
            raise AssertionError(f"demo read-back mismatch for {path}")
        report.verified += 1
    router.close()
    _print(report, out, root)
    return report


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


def _print(report: DemoReport, out: Console, root: Path) -> None:
    label = "embedded annual averages" if report.sources == {"embedded"} else ", ".join(sorted(report.sources))
    table = Table(title=f"Placements (signal: {report.signal}, {label})")
    for col in ("backend", "files", "MB", "gCO2e write", "gCO2e/month"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for backend_id, (n, size, g, gm) in sorted(report.per_backend.items(), key=lambda kv: -kv[1][0]):
        table.add_row(backend_id, f"{n:.0f}", f"{size / 1e6:.1f}", f"{g:.4f}", f"{gm:.4f}")
    out.print(table)
    saved = report.baseline_write_gco2e - report.write_gco2e
    saved_month = report.baseline_gco2e_month - report.gco2e_month
    out.print(f"{report.files} files, {report.bytes_written / 1e6:.1f} MB in {report.seconds:.1f} s "
              f"({report.bytes_written / 1e6 / max(report.seconds, 1e-9):.0f} MB/s) under {root}")
    out.print(f"writes: {report.write_gco2e:.4f} gCO2e; at rest: {report.gco2e_month:.4f} gCO2e per month")
    out.print(f"all to {BASELINE} instead: {report.baseline_write_gco2e:.4f} gCO2e; "
              f"{report.baseline_gco2e_month:.4f} gCO2e per month")
    pct = 100 * saved / report.baseline_write_gco2e if report.baseline_write_gco2e else 0.0
    out.print(f"[bold green]saved {saved:.4f} gCO2e on the writes ({pct:.0f} %) and {saved_month:.4f} gCO2e "
              "per month at rest[/]")
    out.print(f"read back {report.verified} sampled files through the catalog: bytes verified")


def _file_url(path: Path) -> str:
    return path.resolve().as_uri()
