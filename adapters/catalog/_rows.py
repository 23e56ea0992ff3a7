"""One catalog entry as a database row and back, shared by the SQL catalogs.

The column order is :data:`COLUMNS`. Timestamps go in as ISO-8601 text (SQLite) and may come back as
text or as ``datetime`` (PostgreSQL's ``timestamptz``); flags as ``0``/``1`` or ``bool``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from greenroute.model import CatalogEntry, EntryState, GridDataSource, SignalKind

__all__ = ["COLUMNS", "as_committed", "entry_from_row", "prefix_end", "row_from_entry"]

COLUMNS: tuple[str, ...] = (
    "decision_id", "path", "state", "backend_id", "url", "size", "etag", "write_gco2e", "gco2e_month", "intensity",
    "signal", "source", "failovers", "created_at", "updated_at", "region", "grid_zone", "observed_at",
    "is_estimated", "is_stale", "fallback", "model_version", "retention_days", "baseline_backend",
    "baseline_write_gco2e", "baseline_gco2e_month", "baseline_note", "closed_at", "closed_reason", "moves",
)


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def as_committed(entry: CatalogEntry) -> CatalogEntry:
    """``entry`` as a live entry: committed, not closed (a write's entry already is one, and is not copied)."""
    if entry.state is EntryState.COMMITTED and entry.closed_at is None and entry.closed_reason is None:
        return entry
    return replace(entry, state=EntryState.COMMITTED, closed_at=None, closed_reason=None)


def row_from_entry(e: CatalogEntry, *, timestamps_as_text: bool = True) -> tuple[object, ...]:
    """``e`` as a row in :data:`COLUMNS` order."""
    def ts(value: datetime | None) -> object:
        if value is None or not timestamps_as_text:
            return value
        return value.isoformat()

    # A commit's entry is created and updated at one instant: one isoformat for both (a hot path).
    created = ts(e.created_at)
    updated = created if e.updated_at is e.created_at else ts(e.updated_at)
    return (e.decision_id, e.path, e.state.value, e.backend_id, e.url, e.size, e.etag, e.write_gco2e,
            e.gco2e_month, e.carbon_intensity_g_per_kwh, e.signal.value, e.source.value, "\n".join(e.failovers),
            created, updated, e.region, e.grid_zone, ts(e.observed_at), int(e.is_estimated),
            int(e.is_stale), int(e.fallback), e.model_version, e.retention_days, e.baseline_backend,
            e.baseline_write_gco2e, e.baseline_gco2e_month, e.baseline_note, ts(e.closed_at), e.closed_reason,
            "\n".join(e.moves))


def entry_from_row(r: tuple[object, ...] | list[object]) -> CatalogEntry:
    """The entry for a row in :data:`COLUMNS` order."""
    # Ledger exports map every entry of a large catalog: enum members come from dicts (calling an
    # enum costs microseconds) and numbers that already are floats are not converted again.
    return CatalogEntry(
        decision_id=str(r[0]), path=str(r[1]), state=_STATES[str(r[2])], backend_id=str(r[3]), url=str(r[4]),
        size=r[5] if type(r[5]) is int else int(str(r[5])), etag=_text(r[6]), write_gco2e=_float(r[7]),
        gco2e_month=_float(r[8]), carbon_intensity_g_per_kwh=_float(r[9]), signal=_SIGNALS[str(r[10])],
        source=_SOURCES[str(r[11])], failovers=_lines(r[12]), created_at=_time(r[13]) or datetime.min,
        updated_at=_time(r[14]) or datetime.min, region=_text(r[15]), grid_zone=_text(r[16]),
        observed_at=_time(r[17]), is_estimated=bool(r[18]), is_stale=bool(r[19]), fallback=bool(r[20]),
        model_version=_text(r[21]), retention_days=_number(r[22]), baseline_backend=_text(r[23]),
        baseline_write_gco2e=_number(r[24]), baseline_gco2e_month=_number(r[25]), baseline_note=_text(r[26]),
        closed_at=_time(r[27]), closed_reason=_text(r[28]), moves=_lines(r[29]),
    )


_STATES = {s.value: s for s in EntryState}
_SIGNALS = {s.value: s for s in SignalKind}
_SOURCES = {s.value: s for s in GridDataSource}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _float(value: object) -> float:
    return value if type(value) is float else float(str(value))


def _number(value: object) -> float | None:
    return None if value is None else _float(value)


def _lines(value: object) -> tuple[str, ...]:
    text = "" if value is None else str(value)
    return tuple(text.split("\n")) if text else ()


def _time(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value if type(value) is str else str(value))
