"""``greenroute report``: the command's work, behind the CLI's thin front door.

Reads the period, prefix and grouping from the parsed arguments, asks the catalog for the sums,
and writes the table, JSON, CSV or Parquet (to stdout or ``--output``) and, with ``--html``, the
HTML report. On a terminal a progress bar (rich) shows on stderr while the catalog is summed and
the object rows stream; piped, it stays quiet.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..model import utcnow
from ..ports import Catalog
from .export import FORMATS, write_report
from .ledger import Progress, Report, ReportRequest, build_report, iter_objects, parse_by

if TYPE_CHECKING:
    from rich.console import Console

    from ..config import GreenrouteConfig

__all__ = ["add_arguments", "parse_time", "report_command", "request_from_args"]

BY_HELP = ("backend, namespace, prefix:N (the first N directories), region, signal, source, model, second, "
           "minute, hour, day, week, month, object (one row per ledger entry) or total (default backend)")


def add_arguments(report: argparse.ArgumentParser) -> None:
    """The report subcommand's options (the CLI keeps its positional ``prefix``)."""
    report.add_argument("--prefix", dest="prefix_option", default=None, metavar="PREFIX",
                        help="only paths under this prefix")
    report.add_argument("--since", default=None, metavar="TIME",
                        help="start of the period, ISO 8601 (2026-11-01 or 2026-11-01T08:00Z; UTC when no zone "
                             "is given); default the first write")
    report.add_argument("--until", default=None, metavar="TIME", help="end of the period (exclusive); default now")
    report.add_argument("--by", default="backend", metavar="GROUP", help=BY_HELP)
    report.add_argument("--format", choices=FORMATS, default=None,
                        help="table (default), json, csv or parquet; CSV and Parquet state units and model version")
    report.add_argument("--output", default=None, metavar="FILE", help="write the table, JSON, CSV or Parquet here")
    report.add_argument("--html", default=None, metavar="FILE",
                        help="also write the self-contained HTML report with charts (needs greenroute[report])")


def parse_time(text: str, *, key: str) -> datetime:
    """An ISO 8601 date or time, UTC when it has no zone (``now`` is now).

    Raises:
        ConfigError: It is not one.

    Example:
        >>> parse_time("2026-11-01", key="--since").isoformat()
        '2026-11-01T00:00:00+00:00'
    """
    if text.strip().lower() == "now":
        return utcnow()
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"expected an ISO 8601 date or time such as 2026-11-01 or 2026-11-01T08:00Z, got {text!r}",
                          key=key) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def request_from_args(cfg: GreenrouteConfig, args: argparse.Namespace) -> ReportRequest:
    """The report request the arguments describe."""
    prefix = args.prefix_option if getattr(args, "prefix_option", None) is not None else (args.prefix or "")
    until = parse_time(args.until, key="--until") if args.until else utcnow()
    since = parse_time(args.since, key="--since") if args.since else None
    if since is not None and since >= until:
        raise ConfigError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})", key="--since")
    factors = {b.id: b.market_factor_g_per_kwh for b in cfg.backends if b.market_factor_g_per_kwh is not None}
    return ReportRequest(until=until, since=since, prefix=prefix, by=parse_by(args.by), market_factors=factors)


def report_command(cfg: GreenrouteConfig, args: argparse.Namespace, console: Callable[[], Console], *,
                   missing: str | None = None) -> int:
    """Run ``greenroute report``; returns the exit code.

    Args:
        cfg: The configuration (its catalog, and its backends' market-based factors).
        args: The parsed arguments.
        console: Gives the stdout console (made only when text is printed).
        missing: Why there is no catalog to read, when there is none (nothing is created then).
    """
    request = request_from_args(cfg, args)
    fmt = args.format or ("json" if args.json else "table")
    if fmt == "parquet" and not args.output:
        raise ConfigError("Parquet is binary: name a file with --output", key="--output")
    if missing is not None:
        return _nothing(request, fmt, args, console, missing)
    from ..router import catalog_from_url

    catalog = catalog_from_url(cfg.catalog_url)
    try:
        return _run(catalog, request, fmt, args, console)
    except BrokenPipeError:  # `greenroute report ... | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 0
    finally:
        catalog.close()


def _run(catalog: Catalog, request: ReportRequest, fmt: str, args: argparse.Namespace,
         console: Callable[[], Console]) -> int:
    with _progress(quiet=bool(args.json)) as progress:
        html = None
        report = None
        if args.html:
            from .html import write_html

            html, by_backend = write_html(catalog, request, args.html, progress=progress)
            by = request.by
            if by.kind == "total" or (by.kind == "key" and by.key == "backend"):  # the HTML's sums say it all
                report = dataclasses.replace(by_backend, request=request,
                                             rows=by_backend.rows if by.kind == "key" else [])
        if report is None:
            report = build_report(catalog, request, progress=progress)
        objects = None
        if request.by.kind == "object":
            total = report.total.totals.objects if report.total is not None else 0
            objects = iter_objects(catalog, request, total=total, progress=progress)
        _emit(report, fmt, args, console, objects, html)
    return 0


def _emit(report: Report, fmt: str, args: argparse.Namespace, console: Callable[[], Console],
          objects: Iterator[Any] | None, html: Path | None) -> None:
    if args.output:
        target = Path(args.output)
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            n = write_report(report, fmt, None, objects=objects, path=str(target))
        else:
            with target.open("w", encoding="utf-8", newline="") as f:
                n = write_report(report, fmt, f, objects=objects)
        _say(args, console, {"output": str(target), "rows": n, "format": fmt, "html": str(html) if html else None},
             f"wrote {n} rows ({fmt}) to {target}")
    elif fmt == "table":
        write_report(report, fmt, console=console(), objects=objects)
    else:
        text = io.StringIO() if html is not None and fmt == "json" else sys.stdout
        write_report(report, fmt, text, objects=objects)
        if isinstance(text, io.StringIO):  # one JSON document: the HTML's path goes inside it
            document = json.loads(text.getvalue())
            document["html"] = str(html)
            print(json.dumps(document, indent=2))
        sys.stdout.flush()
    if html is not None and not (args.json or fmt == "json"):
        console().print(f"wrote the HTML report to {html}", markup=False)


def _say(args: argparse.Namespace, console: Callable[[], Console], document: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        console().print(text, markup=False)


def _nothing(request: ReportRequest, fmt: str, args: argparse.Namespace, console: Callable[[], Console],
             missing: str) -> int:
    """No catalog yet: say so, and create nothing."""
    if fmt == "json":
        empty = Report(request=request, generated_at=utcnow(), rows=[], total=None, model_versions=(), baselines=(),
                       signals=(), sources=(), has_market=bool(request.market_factors))
        text = io.StringIO()
        write_report(empty, "json", text)
        document = {**json.loads(text.getvalue()), "catalog_exists": False, "message": missing}
        print(json.dumps(document, indent=2))
    else:
        console().print(missing, markup=False)
    return 0


@contextlib.contextmanager
def _progress(*, quiet: bool) -> Iterator[Progress]:
    """A rich progress bar on stderr when it is a terminal; a no-op otherwise (piped, --json)."""
    if quiet or not sys.stderr.isatty():
        yield _no_progress
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def advance(what: str, done: int, total: int | None) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield advance


def _no_progress(_what: str, _done: int, _total: int | None) -> None:
    """Quiet."""

