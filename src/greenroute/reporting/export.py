"""A ledger report as a terminal table, JSON, CSV or Parquet, with its units and model version.

Every column's name carries its unit (``write_gco2e``, ``gco2e_per_month``, ``saved_pct``), and
every file states the units, the carbon model version, the period and the basis (location-based):

* CSV: two leading ``#`` lines (the report's metadata, then ``column=unit`` pairs), then one
  header row. ``pandas.read_csv(path, comment="#")`` reads it back with the stated columns; every
  text value is quoted, so a ``#`` inside one is safe.
* Parquet: the same metadata as JSON in the schema's ``greenroute`` key, and each field's unit and
  description in its own field metadata.
* JSON: ``{"report": metadata, "columns": [...], "rows": [...], "totals": {...}}`` (``totals``: the
  whole period, zeros when the ledger has nothing in it).

Rows per object (``--by object``) stream: CSV and JSON row by row, Parquet in record batches of
10,000, so an export of a large ledger never holds it in memory. pyarrow is imported only for
Parquet (``pip install 'greenroute[report]'``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Generic, TypeVar

from .._format import mass_unit, sig
from ..errors import ConfigError
from ..ports import LedgerObject
from .ledger import Report, ReportRow, zero_totals

if TYPE_CHECKING:  # rich is imported only to print a table, so JSON, CSV and Parquet never load it
    from rich.console import Console

__all__ = ["FORMATS", "Column", "metadata", "object_columns", "read_csv_metadata", "row_columns",
           "write_report"]

FORMATS = ("table", "json", "csv", "parquet")
#: Object rows per Parquet record batch.
_BATCH = 10_000
#: Object rows shown in a terminal table (the rest: export them).
_TABLE_OBJECTS = 200

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Column(Generic[T]):
    """One exported column.

    Attributes:
        name: The column name (its unit is in it, or in ``unit``).
        unit: The unit (``gCO2e``, ``bytes``, ``count``, ``%``, ``gCO2e/kWh``), ``""`` for text.
        description: What it holds.
        get: Its value for one row.
        kind: ``str``, ``int``, ``float``, ``bool`` or ``time`` (for Parquet's schema).
    """

    name: str
    unit: str
    description: str
    get: Callable[[T], Any]
    kind: str = "float"


def row_columns(report: Report) -> list[Column[ReportRow]]:
    """The columns of a grouped report (``--by`` anything but ``object``)."""
    by = report.request.by
    group: list[Column[ReportRow]] = []
    if by.kind == "time":
        group = [Column(by.column, "UTC", f"start of the {by.unit} (ISO 8601)", lambda r: r.start, "time")]
    elif by.kind == "key":
        group = [Column(by.column, "", f"the {by.label} group", lambda r: r.label, "str")]
    else:
        group = [Column("group", "", "the whole period", lambda r: r.label, "str")]
    cols: list[Column[ReportRow]] = [
        *group,
        Column("objects", "count", "entries written in the period or held into it", lambda r: r.totals.objects, "int"),
        Column("bytes", "bytes", "their size", lambda r: r.totals.bytes, "int"),
        Column("writes", "count", "entries written in the period", lambda r: r.totals.writes, "int"),
        Column("write_gco2e", "gCO2e", "estimated carbon of those writes", lambda r: r.totals.write_gco2e),
        Column("at_rest_gco2e", "gCO2e", "at-rest carbon accrued in the period (rate x time held)",
               lambda r: r.totals.at_rest_gco2e),
        Column("total_gco2e", "gCO2e", "writes plus at rest", lambda r: r.total_gco2e),
        Column("gco2e_per_month", "gCO2e/month", "at-rest rate of what is held at the end (per 730 h)",
               lambda r: r.totals.gco2e_month),
        Column("held_objects", "count", "entries held at the end of the period", lambda r: r.totals.held_objects,
               "int"),
        Column("baseline_objects", "count", "entries with a baseline of the same signal kind",
               lambda r: r.totals.baseline_objects, "int"),
        Column("baseline_gco2e", "gCO2e", "what those entries would have emitted on the baseline backend",
               lambda r: r.totals.baseline_gco2e if r.totals.baseline_objects else None),
        Column("compared_gco2e", "gCO2e", "what those entries emitted where they were placed",
               lambda r: r.totals.compared_gco2e if r.totals.baseline_objects else None),
        Column("saved_gco2e", "gCO2e", "baseline_gco2e - compared_gco2e (empty: no comparable baseline)",
               lambda r: r.saved_gco2e),
        Column("saved_pct", "%", "saved_gco2e / baseline_gco2e", lambda r: r.saved_pct),
        Column("stale_or_fallback_pct", "%", "share of the entries estimated on stale or fallback grid data",
               lambda r: r.stale_or_fallback_pct),
        Column("signal", "", "signal kind of the figures: average, marginal or mixed", lambda r: r.signal, "str"),
        Column("mean_intensity_g_per_kwh", "gCO2e/kWh", "mean grid intensity the period's writes used",
               lambda r: r.mean_intensity_g_per_kwh),
    ]
    if report.has_market:
        cols += [
            Column("market_objects", "count", "entries on backends with a market-based factor",
                   lambda r: r.totals.market_objects, "int"),
            Column("market_gco2e", "gCO2e", "market-based: those entries on their backend's declared factor "
                   "(never mixed into the location-based columns)", lambda r: r.market_gco2e),
        ]
    return cols


def object_columns(report: Report) -> list[Column[LedgerObject]]:
    """The columns of ``--by object``: one row per ledger entry, with its inputs and its figures."""
    def total(o: LedgerObject) -> float:
        return (o.entry.write_gco2e if o.written_in_period else 0.0) + o.at_rest_gco2e

    cols: list[Column[LedgerObject]] = [
        Column("path", "", "logical path", lambda o: o.entry.path, "str"),
        Column("decision_id", "", "placement decision (stamped on the object)", lambda o: o.entry.decision_id, "str"),
        Column("backend", "", "backend id", lambda o: o.entry.backend_id, "str"),
        Column("region", "", "the backend's region", lambda o: o.entry.region, "str"),
        Column("grid_zone", "", "grid zone of the intensity", lambda o: o.entry.grid_zone, "str"),
        Column("bytes", "bytes", "size", lambda o: o.entry.size, "int"),
        Column("created_at", "UTC", "committed (its at-rest period starts)", lambda o: o.entry.created_at, "time"),
        Column("closed_at", "UTC", "overwritten, deleted or moved (empty: still held)", lambda o: o.entry.closed_at,
               "time"),
        Column("closed_reason", "", "overwritten, deleted, moved, replaced or reindexed",
               lambda o: o.entry.closed_reason, "str"),
        Column("held_hours", "h", "time held inside the period", lambda o: o.held_seconds / 3600.0),
        Column("written_in_period", "", "its write falls in the period", lambda o: o.written_in_period, "bool"),
        Column("signal", "", "signal kind of the intensity", lambda o: o.entry.signal.value, "str"),
        Column("source", "", "grid data source", lambda o: o.entry.source.value, "str"),
        Column("intensity_g_per_kwh", "gCO2e/kWh", "grid intensity used",
               lambda o: o.entry.carbon_intensity_g_per_kwh),
        Column("observed_at", "UTC", "when the intensity was true", lambda o: o.entry.observed_at, "time"),
        Column("is_estimated", "", "the intensity was an estimate or an annual average",
               lambda o: o.entry.is_estimated, "bool"),
        Column("is_stale", "", "the intensity was a cached value served after a failure", lambda o: o.entry.is_stale,
               "bool"),
        Column("fallback", "", "the decision fell back from the configured live sources", lambda o: o.entry.fallback,
               "bool"),
        Column("model_version", "", "carbon model of the estimates", lambda o: o.entry.model_version, "str"),
        Column("write_gco2e", "gCO2e", "estimated carbon of the write (as stamped on the object)",
               lambda o: o.entry.write_gco2e),
        Column("gco2e_per_month", "gCO2e/month", "at-rest rate (per 730 h)", lambda o: o.entry.gco2e_month),
        Column("at_rest_gco2e", "gCO2e", "at-rest carbon accrued in the period", lambda o: o.at_rest_gco2e),
        Column("total_gco2e", "gCO2e", "the write (when in the period) plus at rest", total),
        Column("baseline_backend", "", "backend the write is compared with", lambda o: o.entry.baseline_backend,
               "str"),
        Column("baseline_write_gco2e", "gCO2e", "the write on the baseline backend (same signal kind and model)",
               lambda o: o.entry.baseline_write_gco2e),
        Column("baseline_gco2e_per_month", "gCO2e/month", "at-rest rate on the baseline backend",
               lambda o: o.entry.baseline_gco2e_month),
        Column("baseline_gco2e", "gCO2e", "the baseline over the same period", lambda o: o.baseline_gco2e),
        Column("saved_gco2e", "gCO2e", "baseline_gco2e - total_gco2e (empty: no comparable baseline)",
               lambda o: None if o.baseline_gco2e is None else o.baseline_gco2e - total(o)),
        Column("baseline_note", "", "why there is no baseline, when there is none", lambda o: o.entry.baseline_note,
               "str"),
    ]
    if report.has_market:
        cols.append(Column("market_gco2e", "gCO2e", "market-based figure (its backend's declared factor)",
                           lambda o: o.market_gco2e))
    return cols


def metadata(report: Report) -> dict[str, Any]:
    """What every export states about its figures."""
    req = report.request
    since = report.since
    return {
        "generator": "greenroute ledger report",
        "basis": "location-based (grid intensity where the bytes sit; GHG Protocol Scope 2 location-based method)",
        "model_version": ",".join(report.model_versions) or None,
        "since": _iso(since),
        "until": _iso(req.until),
        "by": req.by.label,
        "prefix": req.prefix,
        "baseline": ",".join(report.baselines) or None,
        "signals": ",".join(report.signals) or None,
        "sources": ",".join(report.sources) or None,
        "month": "730 h",
        "generated_at": _iso(report.generated_at),
    }


def write_report(report: Report, fmt: str, out: IO[str] | None = None, *, console: Console | None = None,
                 objects: Iterable[LedgerObject] | None = None, path: str | None = None) -> int:
    """Write ``report`` in ``fmt`` (``table``, ``json``, ``csv``, ``parquet``).

    Args:
        report: The report (with ``--by object``: its total and labels).
        fmt: The format.
        out: The text stream (json, csv; a table goes to a plain console on it).
        console: The rich console for a table.
        objects: The object rows, for ``--by object``.
        path: Where to write (required for Parquet).

    Returns:
        The number of rows written.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})", key="--format")
    by_object = report.request.by.kind == "object"
    if by_object:
        cols: Sequence[Column[Any]] = object_columns(report)
        rows: Iterable[Any] = objects if objects is not None else ()
    else:
        cols = row_columns(report)
        rows = report.rows if report.request.by.kind != "total" else ([report.total] if report.total else [])
    if fmt == "parquet":
        if path is None:
            raise ConfigError("Parquet is binary: name a file with --output", key="--output")
        return _parquet(report, cols, rows, path)
    if fmt == "table":
        if console is None:
            from rich.console import Console

            console = Console(file=out, highlight=False, width=160, color_system=None)
        return _table(report, cols, rows, console)
    if out is None:
        raise ConfigError(f"{fmt} needs a text stream or --output", key="--output")
    if fmt == "csv":
        return _csv(report, cols, rows, out)
    return _json(report, cols, rows, out)


# -- CSV ------------------------------------------------------------------------------------------


def _csv(report: Report, cols: Sequence[Column[Any]], rows: Iterable[Any], out: IO[str]) -> int:
    meta = metadata(report)
    out.write("# " + "; ".join(f"{k}={'' if v is None else v}" for k, v in meta.items()) + "\n")
    out.write("# units: " + "; ".join(f"{c.name}={c.unit or '-'}" for c in cols) + "\n")
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow([c.name for c in cols])
    # One converter per column, chosen once: an export of a large ledger converts millions of cells.
    cells = [(c.get, _CSV[c.kind]) for c in cols]
    n = 0
    for row in rows:
        writer.writerow([convert(get(row)) for get, convert in cells])
        n += 1
    return n


def _csv_float(value: Any) -> Any:
    return "" if value is None or not math.isfinite(value) else value


_CSV: dict[str, Callable[[Any], Any]] = {
    "str": lambda v: "" if v is None else v,
    "int": lambda v: "" if v is None else v,
    "float": _csv_float,
    "bool": lambda v: "" if v is None else ("true" if v else "false"),
    "time": lambda v: "" if v is None else _iso(v),
}


def read_csv_metadata(text: str | IO[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The metadata and ``{column: unit}`` of an exported CSV (its two ``#`` lines).

    Example:
        >>> meta, units = read_csv_metadata("# model_version=ccf-2024.1; by=backend\\n# units: bytes=bytes\\n")
        >>> meta["model_version"], units["bytes"]
        ('ccf-2024.1', 'bytes')
    """
    stream = io.StringIO(text) if isinstance(text, str) else text
    first, second = stream.readline(), stream.readline()
    if not first.startswith("# ") or not second.startswith("# units: "):
        raise ValueError("not a greenroute ledger CSV (it starts with two '#' lines)")
    meta = dict(part.split("=", 1) for part in first[2:].rstrip("\n").split("; ") if "=" in part)
    units = dict(part.split("=", 1) for part in second[len("# units: "):].rstrip("\n").split("; ") if "=" in part)
    return meta, {k: ("" if v == "-" else v) for k, v in units.items()}


# -- JSON -----------------------------------------------------------------------------------------


def _json(report: Report, cols: Sequence[Column[Any]], rows: Iterable[Any], out: IO[str]) -> int:
    head = {"report": metadata(report),
            "columns": [{"name": c.name, "unit": c.unit, "description": c.description} for c in cols]}
    text = json.dumps(head, indent=2)
    out.write(text[:-2] + ',\n  "rows": [')  # rows stream in: the document is never held whole
    n = 0
    for row in rows:
        out.write(("," if n else "") + "\n    " + json.dumps({c.name: _json_value(c.get(row)) for c in cols}))
        n += 1
    total = report.total if report.total is not None else ReportRow("total", zero_totals())
    totals = {c.name: _json_value(c.get(total)) for c in row_columns(report)[1:]}
    out.write(("\n  " if n else "") + '],\n  "totals": ' + json.dumps(totals) + "\n}\n")
    return n


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- Parquet --------------------------------------------------------------------------------------


def _parquet(report: Report, cols: Sequence[Column[Any]], rows: Iterable[Any], path: str) -> int:
    try:
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigError("Parquet export needs pyarrow: pip install 'greenroute[report]'",
                          key="--format") from exc
    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
             "time": pa.timestamp("us", tz="UTC")}
    units = {c.name: c.unit for c in cols}
    schema = pa.schema(
        [pa.field(c.name, types[c.kind], metadata={"unit": c.unit, "description": c.description}) for c in cols],
        metadata={"greenroute": json.dumps({**metadata(report), "units": units})},
    )
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in _batches(rows, _BATCH):
            arrays = [pa.array([c.get(r) for r in batch], type=types[c.kind]) for c in cols]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            n += len(batch)
    return n


def _batches(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- the terminal table ---------------------------------------------------------------------------

_TABLE_ROWS = ("objects", "bytes", "write_gco2e", "at_rest_gco2e", "gco2e_per_month", "baseline_gco2e",
               "saved_gco2e", "saved_pct", "stale_or_fallback_pct", "market_gco2e")
_TABLE_OBJECT_COLUMNS = ("path", "backend", "bytes", "write_gco2e", "at_rest_gco2e", "gco2e_per_month",
                         "baseline_gco2e", "saved_gco2e", "signal", "closed_reason")
_HEADINGS = {"objects": "objects", "bytes": "size", "write_gco2e": "write\ngCO2e",
             "at_rest_gco2e": "at rest\ngCO2e", "gco2e_per_month": "gCO2e\n/month", "baseline_gco2e": "baseline\ngCO2e",
             "saved_gco2e": "saved\ngCO2e", "saved_pct": "saved\n%", "stale_or_fallback_pct": "stale or\nfallback %",
             "market_gco2e": "market-\nbased gCO2e", "closed_reason": "closed"}


def _table(report: Report, cols: Sequence[Column[Any]], rows: Iterable[Any], console: Console) -> int:
    from rich import box
    from rich.table import Table

    by_object = report.request.by.kind == "object"
    wanted = _TABLE_OBJECT_COLUMNS if by_object else _TABLE_ROWS
    shown = [cols[0], *(c for c in cols[1:] if c.name in wanted)] if not by_object else \
        [c for c in cols if c.name in wanted]
    meta = metadata(report)
    title = f"Carbon by {report.request.by.label}" + (f" under {report.request.prefix}" if report.request.prefix
                                                        else "")
    n, kept = 0, []
    for row in rows:  # object rows stream: only the first ones are shown, the rest counted
        if not by_object or n < _TABLE_OBJECTS:
            kept.append(row)
        n += 1
    total_cols = {c.name: c for c in row_columns(report)}
    show_total = report.total is not None and not by_object and report.request.by.kind != "total"
    grams = [v for c in shown if c.unit.startswith("gCO2e") for r in kept if isinstance(v := c.get(r), float)]
    if show_total and report.total is not None:
        grams += [v for c in shown if c.unit.startswith("gCO2e")
                  if isinstance(v := total_cols[c.name].get(report.total), float)]
    unit, scale = mass_unit(grams)  # one unit for the whole table
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=title, show_footer=False)
    for i, c in enumerate(shown):
        heading = _HEADINGS.get(c.name, c.name).replace("gCO2e", unit)
        if i == 0:  # the group (or path) is what the row is about: never squeezed away
            table.add_column(heading, justify="left", overflow="fold", min_width=min(24, 8 + 8 * by_object))
        else:
            table.add_column(heading, justify="left" if c.kind in ("str", "time") else "right", no_wrap=True)
    for row in kept:
        table.add_row(*(_cell(c, c.get(row), scale) for c in shown))
    if show_total and report.total is not None:
        table.add_row("total", *(_cell(total_cols[c.name], total_cols[c.name].get(report.total), scale)
                                 for c in shown[1:]), style="bold")
    console.print(table)
    if by_object and n > _TABLE_OBJECTS:
        console.print(f"... and {n - _TABLE_OBJECTS} more objects: export them with --format csv or parquet")
    console.print(_caption(report, meta))
    return n


def _caption(report: Report, meta: dict[str, Any]) -> str:
    lines = [f"period {meta['since'] or '-'} to {meta['until']}; location-based gCO2e; model {meta['model_version']}; "
             f"signal {meta['signals']} from {meta['sources']}"]
    total = report.total
    if total is not None:
        t = total.totals
        base = meta["baseline"] or "none"
        if t.baseline_objects < t.objects:
            lines.append(f"saved vs {base}: over the {t.baseline_objects} of {t.objects} objects with a baseline "
                         "of the same signal kind (--by object shows why the others have none)")
        else:
            lines.append(f"saved vs {base}, priced at each write with the same signal kind and model")
        if "mixed" in {r.signal for r in [*report.rows, total]}:
            lines.append("some rows mix marginal and average figures: read them --by signal")
    if report.has_market:
        lines.append("market-based gCO2e is reported apart, from the backends' declared factors; it never changes "
                     "a location-based figure")
    return "\n".join(f"[dim]{line}[/dim]" for line in lines)


def _cell(col: Column[Any], value: Any, scale: float) -> str:
    if value is None:
        return "–"
    if col.kind == "time":
        return _iso(value) or ""
    if col.name == "bytes":
        return _bytes(int(value))
    if col.unit == "%":
        return f"{value:.1f}"
    if col.kind == "int":
        return f"{value:,}"
    if isinstance(value, float):
        return sig(value / scale) if col.unit.startswith("gCO2e") else sig(value)
    return str(value)


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.4g} {unit}"
        value /= 1000
    return f"{n} B"


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")
