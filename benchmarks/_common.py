"""Shared machinery for the benchmark scripts: clocks, statistics, interleaving, configs, output.

Every comparison is measured side by side, interleaved (A B, then B A, ...), so that the noise of a
busy machine falls on both sides alike. Times are taken with :func:`time.perf_counter_ns` and
reported in µs or ms as medians and p99 (nearest rank).

The scripts run from a source checkout: :func:`setup_paths` puts the repository root on
``sys.path`` so that ``tests.servers.local`` (moto as a subprocess) and ``tests.fakes.grid_servers``
(fake grid APIs) can be imported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
DEFAULT_OUT = BENCH_DIR / "results"

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

clock = time.perf_counter_ns


def setup_paths() -> None:
    """Make ``tests.*`` and the sibling benchmark modules importable."""
    for folder in (str(REPO), str(BENCH_DIR)):
        if folder not in sys.path:
            sys.path.insert(0, folder)


# -- statistics ------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summary(samples_ns: Sequence[int], unit: str = "us") -> dict[str, float]:
    """Median, p99, mean, min and max of ``samples_ns``, in ``unit`` (``us`` or ``ms``)."""
    scale = {"us": 1e3, "ms": 1e6, "s": 1e9}[unit]
    values = sorted(s / scale for s in samples_ns)
    return {
        "n": len(values),
        f"p50_{unit}": statistics.median(values) if values else math.nan,
        f"p99_{unit}": percentile(values, 99),
        f"mean_{unit}": statistics.fmean(values) if values else math.nan,
        f"min_{unit}": values[0] if values else math.nan,
        f"max_{unit}": values[-1] if values else math.nan,
    }


def compare(routed_ns: Sequence[int], direct_ns: Sequence[int]) -> dict[str, float]:
    """The headline of a routed/direct pair measured interleaved, in ms.

    ``ratio`` is median(routed) / median(direct); ``added_ms`` is median(routed) - median(direct);
    ``paired_added_ms`` is the median of the per-round differences, which is steadier when the
    machine's speed drifts during the run.
    """
    routed = statistics.median(routed_ns) / 1e6
    direct = statistics.median(direct_ns) / 1e6
    paired = statistics.median(r - d for r, d in zip(routed_ns, direct_ns, strict=False)) / 1e6
    return {"ratio": routed / direct if direct > 0 else math.nan, "added_ms": routed - direct,
            "paired_added_ms": paired}


def interleave(variants: Mapping[str, Callable[[int], object]], rounds: int, *, warmup: int = 2,
               between: Callable[[int], object] | None = None) -> dict[str, list[int]]:
    """Time each variant once per round, in alternating order, and return the samples (ns).

    Each variant is called with the round number, so it can use a fresh key. The order is
    reversed every other round (A B C, C B A, ...), so neither side is always first. ``between``
    runs after every round, outside the timings (for clean-up).
    """
    names = list(variants)
    for i in range(warmup):
        for name in names:
            variants[name](-1 - i)
        if between is not None:
            between(-1 - i)
    samples: dict[str, list[int]] = {name: [] for name in names}
    for i in range(rounds):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            fn = variants[name]
            start = clock()
            fn(i)
            samples[name].append(clock() - start)
        if between is not None:
            between(i)
    return samples


# -- the machine -------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model from ``/proc/cpuinfo`` (or :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_total_gib(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def peak_rss_mb() -> float:
    """This process's peak resident set size (``VmHWM``), in MB (10^6 bytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def current_rss_mb() -> float:
    """This process's current resident set size (``VmRSS``), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


# -- results -----------------------------------------------------------------------------------------


@dataclass
class Section:
    """One benchmark section's results, written as ``<out>/<name>.json``.

    Attributes:
        name: File name and key in ``latest.json``.
        title: Heading in ``latest.md``.
        params: What was run (sizes, counts).
        rows: One dict per measurement; every value a number, a string or a bool.
        targets: ``{"target", "measured", "met"}`` for each of the issue's targets.
        notes: Free text for the markdown.
        skipped: ``{"what", "reason"}`` for each pair that could not run.
        table: Column keys and headings for the markdown table (all columns when empty).
    """

    name: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    table: list[tuple[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def target(self, name: str, *, goal: str, measured: str, met: bool | None) -> None:
        """Record one of the issue's targets (``met=None``: could not be judged)."""
        self.targets.append({"section": self.name, "target": name, "goal": goal, "measured": measured,
                             "met": met})

    def skip(self, what: str, reason: str) -> None:
        """Record (and print) a pair that was not run."""
        print(f"  skipped {what}: {reason}", flush=True)
        self.skipped.append({"what": what, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {"section": self.name, "title": self.title, "seconds": round(self.seconds, 2),
                "params": self.params, "rows": self.rows, "targets": self.targets, "notes": self.notes,
                "skipped": self.skipped, **({"extra": self.extra} if self.extra else {})}

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.rows:
            columns = self.table or [(k, k) for k in self.rows[0]]
            lines.append("| " + " | ".join(h for _, h in columns) + " |")
            lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|")
            for row in self.rows:
                lines.append("| " + " | ".join(fmt(row.get(k)) for k, _ in columns) + " |")
            lines.append("")
        for note in self.notes:
            lines.append(f"- {note}")
        for s in self.skipped:
            lines.append(f"- skipped {s['what']}: {s['reason']}")
        if self.notes or self.skipped:
            lines.append("")
        return "\n".join(lines)


def fmt(value: Any) -> str:
    """A table cell: numbers with sensible precision, booleans as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n")
    tmp.replace(path)


def clean_numbers(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by ``None`` (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_numbers(v) for v in obj]
    return obj


def write_section(section: Section, out: Path) -> Path:
    """Write one section's JSON, with the date and machine, and return its path."""
    path = out / f"{section.name}.json"
    write_json(path, clean_numbers({"date": now_iso(), "machine": machine(), **section.as_dict()}))
    return path


def size_label(size: int) -> str:
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


# -- configs and servers -----------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A TOML literal for a str, number, bool, list or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def write_config(path: Path, *, backends: Sequence[Mapping[str, Any]], catalog_db: Path | None = None,
                 placement: Mapping[str, Any] | None = None,
                 sources: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write a greenroute TOML config and return its path.

    ``placement`` defaults to ``sources = ["embedded"]``; each backend's ``storage_options`` goes
    into its own sub-table.
    """
    lines = ["[placement]"]
    for key, value in (placement or {"sources": ["embedded"]}).items():
        lines.append(f"{key} = {toml_value(value)}")
    for name, table in (sources or {}).items():
        lines += ["", f"[sources.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    if catalog_db is not None:
        lines += ["", "[catalog]", f"url = {toml_value('sqlite:///' + str(catalog_db))}"]
    for backend in backends:
        lines += ["", "[[backends]]"]
        options = backend.get("storage_options")
        lines += [f"{k} = {toml_value(v)}" for k, v in backend.items() if k != "storage_options"]
        if options:
            lines += ["[backends.storage_options]"] + [f"{k} = {toml_value(v)}" for k, v in options.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"greenroute-bench-{prefix}-") as tmp:
        yield Path(tmp)


@dataclass
class Context:
    """What every section gets: the run's mode, where results go, and the shared moto server.

    Attributes:
        smoke: Tiny sizes and counts; nothing about timings is asserted anywhere.
        out: The results directory.
        moto_endpoint: ``http://127.0.0.1:PORT`` of a running moto server, or ``None``.
        moto_reason: Why there is no moto server, when there is none.
    """

    smoke: bool
    out: Path
    moto_endpoint: str | None = None
    moto_reason: str = ""
    started: float = field(default_factory=time.monotonic)


def moto_options(endpoint: str) -> dict[str, Any]:
    """s3fs / greenroute ``storage_options`` for the moto server at ``endpoint``."""
    setup_paths()
    from tests.servers.local import s3_storage_options

    return s3_storage_options(endpoint)


def boto3_kwargs(endpoint: str) -> dict[str, Any]:
    """``boto3.client("s3", **kwargs)`` for the moto server at ``endpoint``."""
    setup_paths()
    from tests.servers.local import MOTO_KEY, MOTO_SECRET

    return {"endpoint_url": endpoint, "aws_access_key_id": MOTO_KEY, "aws_secret_access_key": MOTO_SECRET,
            "region_name": "us-east-1"}


def create_bucket(endpoint: str, name: str) -> None:
    setup_paths()
    from tests.servers.local import create_s3_bucket

    create_s3_bucket(endpoint, name)


def section_main(run: Callable[[Context], Section], doc: str | None, smoke_help: str, *,
                 needs_moto: bool = False) -> int:
    """The command line of one section script: ``[--smoke] [--out DIR]``, run it, print and write it."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--smoke", action="store_true", help=f"{smoke_help}; checks that it runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    args = parser.parse_args()
    if needs_moto:
        setup_paths()
        from run import moto

        with moto() as (endpoint, reason):
            section = run(Context(smoke=args.smoke, out=args.out, moto_endpoint=endpoint, moto_reason=reason))
    else:
        section = run(Context(smoke=args.smoke, out=args.out))
    print(section.markdown())
    print(f"wrote {write_section(section, args.out)}")
    return 0

