"""Copy one catalog into another, history included: ``greenroute catalog migrate --from URL --to URL``.

A fleet that outgrows one machine's SQLite catalog moves it to PostgreSQL with::

    greenroute catalog migrate --from sqlite:///.greenroute/catalog.db --to postgresql://greenroute@db:5432/greenroute

Every entry is copied as it is (committed, closed and pending, with its decision id, times and
carbon figures), a batch at a time, through the catalogs' bulk methods (:class:`BulkCatalog`). An
entry whose decision id the target already has is skipped, so running the migration twice changes
nothing, and an interrupted run can simply be started again. At the end both catalogs are read
again in decision-id order and compared: the counts, and a SHA-256 over a canonical form of every
source entry and of the target's entries with the same ids. Entries that the target holds
differently, or could not take (its path already has another live entry there), are named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .model import CatalogEntry
from .ports import Catalog

__all__ = ["BulkCatalog", "MigrationReport", "canonical", "migrate", "migrate_command", "verify"]

#: Entries per batch (one transaction in the target each).
BATCH = 5000
#: At most this many differing decision ids are named in a report.
_NAMED = 20


class BulkCatalog(Catalog, Protocol):
    """A catalog that can be copied: every entry out in decision-id order, and entries in as they are."""

    def entries(self) -> Iterator[CatalogEntry]:
        """Every entry in every state, sorted by decision id."""
        ...

    def count_all(self) -> int:
        """How many entries there are, in every state."""
        ...

    def import_entries(self, entries: Iterable[CatalogEntry]) -> int:
        """Insert entries as they are, skipping decision ids already present (and any that would give a
        path a second live entry); returns how many were inserted."""
        ...


@dataclass(slots=True)
class MigrationReport:
    """What a migration did and what the verification found.

    Attributes:
        source_entries: Entries in the source (every state).
        copied: Entries inserted into the target by this run.
        already_present: Source entries the target already had (from an earlier run, or a fleet writing to it).
        target_entries: Entries in the target at the end (it may hold more than the source).
        source_checksum: SHA-256 over the source's entries in canonical form, in decision-id order.
        target_checksum: The same over the target's entries with the source's decision ids.
        missing: Decision ids of source entries the target lacks (first few).
        different: Decision ids the target holds with other contents (first few).
        missing_count: How many are missing in all.
        different_count: How many differ in all.
    """

    source_entries: int = 0
    copied: int = 0
    already_present: int = 0
    target_entries: int = 0
    source_checksum: str = ""
    target_checksum: str = ""
    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    missing_count: int = 0
    different_count: int = 0

    @property
    def verified(self) -> bool:
        """Every source entry is in the target, identical (the checksums match)."""
        return self.missing_count == 0 and self.different_count == 0 and self.source_checksum == self.target_checksum

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {"source_entries": self.source_entries, "copied": self.copied,
                "already_present": self.already_present, "target_entries": self.target_entries,
                "source_checksum": self.source_checksum, "target_checksum": self.target_checksum,
                "verified": self.verified, "missing": self.missing, "missing_count": self.missing_count,
                "different": self.different, "different_count": self.different_count}


def canonical(entry: CatalogEntry) -> bytes:
    """``entry`` as canonical bytes: the same entry gives the same bytes from any catalog.

    Times are UTC ISO-8601 (a naive time is taken as UTC), floats their shortest exact repr,
    flags booleans, enums their values.
    """
    def value(v: object) -> object:
        if isinstance(v, datetime):
            return (v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)).isoformat()
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, float):
            return repr(v)
        return getattr(v, "value", v)

    fields = {name: value(getattr(entry, name)) for name in entry.__dataclass_fields__}
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _bulk(catalog: Catalog, role: str) -> BulkCatalog:
    for method in ("entries", "count_all", "import_entries"):
        if not callable(getattr(catalog, method, None)):
            from .errors import CatalogError

            raise CatalogError(f"the {role} catalog ({type(catalog).__name__}) cannot be migrated: it has no "
                               f"{method}()")
    return catalog  # type: ignore[return-value]


def migrate(source: Catalog, target: Catalog, *, batch: int = BATCH,
            progress: Callable[[int], None] | None = None,
            verifying: Callable[[int], None] | None = None) -> MigrationReport:
    """Copy every entry of ``source`` into ``target``, then verify.

    Args:
        source: The catalog to copy (left unchanged).
        target: The catalog to copy into (entries it already has are left as they are).
        batch: Entries per transaction in the target.
        progress: Called with the number of source entries handled after each batch.
        verifying: Called with the number of source entries compared, every few thousand.

    Returns:
        What was copied and what the verification found (see :attr:`MigrationReport.verified`).
    """
    src, dst = _bulk(source, "source"), _bulk(target, "target")
    report = MigrationReport()
    chunk: list[CatalogEntry] = []
    for entry in src.entries():
        chunk.append(entry)
        if len(chunk) >= batch:
            report.copied += dst.import_entries(chunk)
            if progress is not None:
                progress(len(chunk))
            chunk = []
    if chunk:
        report.copied += dst.import_entries(chunk)
        if progress is not None:
            progress(len(chunk))
    verify(src, dst, report, progress=verifying)
    report.already_present = report.source_entries - report.copied - report.missing_count
    return report


def verify(source: BulkCatalog, target: BulkCatalog, report: MigrationReport | None = None, *,
           progress: Callable[[int], None] | None = None) -> MigrationReport:
    """Compare the two catalogs entry by entry (a merge of both in decision-id order), with checksums."""
    report = report if report is not None else MigrationReport()
    src_hash, dst_hash = hashlib.sha256(), hashlib.sha256()
    theirs = target.entries()
    current: CatalogEntry | None = next(theirs, None)
    count = 0
    extra = 0
    for mine in source.entries():
        count += 1
        if progress is not None and count % 1000 == 0:
            progress(1000)
        data = canonical(mine)
        src_hash.update(data)
        while current is not None and current.decision_id < mine.decision_id:
            extra += 1
            current = next(theirs, None)
        if current is None or current.decision_id != mine.decision_id:
            report.missing_count += 1
            if len(report.missing) < _NAMED:
                report.missing.append(mine.decision_id)
            continue
        other = canonical(current)
        dst_hash.update(other)
        if other != data:
            report.different_count += 1
            if len(report.different) < _NAMED:
                report.different.append(mine.decision_id)
        current = next(theirs, None)
    while current is not None:
        extra += 1
        current = next(theirs, None)
    if progress is not None and count % 1000:
        progress(count % 1000)
    report.source_entries = count
    report.target_entries = count - report.missing_count + extra
    report.source_checksum = src_hash.hexdigest()
    report.target_checksum = dst_hash.hexdigest()
    return report


def migrate_command(cfg: Any, args: Any) -> int:
    """``greenroute catalog migrate``: run :func:`migrate` with a progress bar on a terminal, and say what it did.

    Returns:
        0 when verified, 1 when the target does not hold every source entry as it is.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .router import catalog_from_url

    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False)
    target_url = args.target or cfg.catalog_url
    source = _bulk(catalog_from_url(args.source), "source")
    try:
        target = catalog_from_url(target_url)
        try:
            total = source.count_all()
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            # The bar goes to stderr, and only on a terminal: piped output stays the report alone.
            with Progress(*columns, console=err, disable=args.json or not err.is_terminal, transient=True) as bar:
                copying = bar.add_task("copying entries", total=total)
                checking = bar.add_task("verifying", total=total, start=False)

                def verifying(n: int) -> None:
                    bar.start_task(checking)
                    bar.advance(checking, n)

                report = migrate(source, target, progress=lambda n: bar.advance(copying, n), verifying=verifying)
        finally:
            target.close()
    finally:
        source.close()
    if args.json:
        print(json.dumps({"from": _shown(args.source), "to": _shown(target_url), **report.to_dict()}, indent=2))
        return 0 if report.verified else 1
    out.print(f"copied {report.copied} of {report.source_entries} entries from {_shown(args.source)} to "
              f"{_shown(target_url)}; {report.already_present} were already there")
    out.print(f"the target holds {report.target_entries} entries")
    if report.verified:
        out.print(f"verified: every source entry is in the target, identical (sha256 {report.source_checksum[:16]}…)")
        return 0
    if report.missing_count:
        out.print(f"[bold red]not verified:[/] {report.missing_count} source entries are missing from the target "
                  f"(their path has another live entry or reservation there?): {', '.join(report.missing)}")
    if report.different_count:
        out.print(f"[bold red]not verified:[/] {report.different_count} entries differ in the target: "
                  f"{', '.join(report.different)}")
    if not report.missing_count and not report.different_count:
        out.print("[bold red]not verified:[/] the checksums differ")
    return 1


def _shown(url: str) -> str:
    """``url`` without a password (there should be none: the catalogs refuse one), for output."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}@{host}"))
