"""The carbon ledger's SQL, shared by the SQL catalogs: a report's sums, and its rows per object.

Both queries read the catalog's ``entries`` table (the column layout of :mod:`._rows`) and do the
arithmetic in the database, so a report over a large catalog moves a few rows, not the catalog.
Only two things differ between databases, and a :class:`Dialect` supplies them: how a timestamp
column becomes integer microseconds since the epoch, and how a path becomes its first directories.

Times are integer microseconds, so held times are exact: accrued at-rest carbon is
``gco2e_month x held_us / MONTH_US``. (SQLite's own ``julianday`` is a double, about 40 µs coarse
today, which would make an hour's accrual wrong in its eighth digit.)

Without time buckets a report is one ``GROUP BY``. With buckets it is a sweep: each entry gives a
start event (adding its count, bytes and at-rest rates) and, when it was closed before ``until``,
an end event (taking them away again); each group gets one boundary event per bucket start. Sorted
by time within each group, running sums (window functions) say what was held after every event, so
the carbon accrued between two events is ``rate x (next time - this time)``, and it belongs to the
bucket of the latest boundary. That is O(n log n) in the entries, whatever the number of buckets;
joining entries to the buckets they overlap would be O(entries x buckets).

Events at the same instant are ordered end, boundary, start: an entry closed exactly at a bucket's
start is not held in it, and one written then is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from greenroute.errors import ConfigError
from greenroute.ports import LEDGER_KEYS, MONTH_US, LedgerObject, LedgerQuery, LedgerTotals

from ._rows import COLUMNS, entry_from_row, prefix_end

__all__ = ["POSTGRES", "SQLITE", "Dialect", "micros", "object_from_row", "objects_sql", "prefix_of",
           "totals_from_rows", "totals_sql"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: "Since the beginning": earlier than any timestamp, and still a BIGINT.
_BEFORE_ALL = -(2**62)
_MONTH = f"{float(MONTH_US)!r}"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one database needs to run the ledger's SQL.

    Attributes:
        placeholder: The driver's named-parameter marker, with ``{}`` for the name (``:{}`` for sqlite3,
            ``%({})s`` for psycopg). Parameters are passed as a dict.
        micros: SQL for a timestamp column as integer microseconds since the epoch (UTC).
        prefix: SQL for the first ``depth`` directories of ``path`` (``lab/batch-00/``), ``''`` for none.
        namespace: SQL for the first segment of ``path``.
        same: SQL for a null-safe equality of two expressions.
        materialized: What makes a CTE computed once (SQLite otherwise copies the timestamp expressions
            into every use, and a report takes 20 times as long).
        month_number: SQL for ``year * 12 + month`` (UTC) of a time in integer microseconds.
        table: The entries table's (qualified) name.
    """

    placeholder: str
    micros: Callable[[str], str]
    prefix: Callable[[int], str]
    namespace: str
    same: Callable[[str, str], str]
    month_number: Callable[[str], str]
    materialized: str = ""
    table: str = "entries"

    def with_table(self, table: str) -> Dialect:
        """The same dialect over another table (a schema-qualified one)."""
        return replace(self, table=table)


def _sqlite_micros(col: str) -> str:
    # Python writes ISO text: 'YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM'. The fraction is cut off before
    # strftime, because SQLite rounds times to whole milliseconds (and .9996 s would round up).
    frac = f"substr({col}, 20, 1) = '.'"
    whole = f"substr({col}, 1, 19) || substr({col}, CASE WHEN {frac} THEN 27 ELSE 20 END)"
    return (f"(CAST(strftime('%s', {whole}) AS INTEGER) * 1000000"
            f" + CASE WHEN {frac} THEN CAST(substr({col}, 21, 6) AS INTEGER) ELSE 0 END)")


def prefix_of(path: str, depth: int) -> str:
    """The first ``depth`` directories of ``path``, with a trailing slash (``''`` at the top level).

    SQLite has no split function, so its dialect calls this, registered as ``greenroute_prefix``.

    Example:
        >>> prefix_of("lab/batch-00/part-1.bin", 1), prefix_of("lab/batch-00/part-1.bin", 5)
        ('lab/', 'lab/batch-00/')
    """
    folders = path.split("/")[:-1][: max(0, int(depth))]
    return "/".join(folders) + "/" if folders else ""


SQLITE = Dialect(
    placeholder=":{}",
    micros=_sqlite_micros,
    prefix=lambda depth: f"greenroute_prefix(path, {int(depth)})",
    namespace="CASE WHEN instr(path, '/') > 0 THEN substr(path, 1, instr(path, '/') - 1) ELSE '' END",
    same=lambda a, b: f"{a} IS {b}",
    month_number=lambda us: (f"(CAST(strftime('%Y', ({us}) / 1000000, 'unixepoch') AS INTEGER) * 12"
                             f" + CAST(strftime('%m', ({us}) / 1000000, 'unixepoch') AS INTEGER))"),
    materialized="MATERIALIZED ",
)

POSTGRES = Dialect(
    placeholder="%({})s",
    micros=lambda col: f"CAST(EXTRACT(EPOCH FROM {col}) * 1000000 AS BIGINT)",
    prefix=lambda depth: f"COALESCE(substring(path from '^((?:[^/]*/){{1,{int(depth)}}})'), '')",
    namespace="CASE WHEN strpos(path, '/') > 0 THEN split_part(path, '/', 1) ELSE '' END",
    same=lambda a, b: f"{a} IS NOT DISTINCT FROM {b}",
    month_number=lambda us: (f"CAST(EXTRACT(YEAR FROM to_timestamp(({us}) / 1000000.0) AT TIME ZONE 'UTC') * 12"
                             f" + EXTRACT(MONTH FROM to_timestamp(({us}) / 1000000.0) AT TIME ZONE 'UTC') AS BIGINT)"),
)


def micros(value: datetime) -> int:
    """``value`` as integer microseconds since the epoch (exactly; naive times are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _time(us: object) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=int(str(us)))


class _Params:
    """Names each parameter and hands out the dialect's marker for it (so text order never matters)."""

    def __init__(self, dialect: Dialect) -> None:
        self.marker = dialect.placeholder
        self.values: dict[str, object] = {}

    def __call__(self, value: object) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return self.marker.format(name)

    def bigint(self, value: int) -> str:
        return f"CAST({self(value)} AS BIGINT)"

    def real(self, value: float) -> str:
        return f"CAST({self(value)} AS DOUBLE PRECISION)"


def _key_sql(key: str, depth: int, d: Dialect) -> str:
    columns = {"backend": "backend_id", "region": "region", "signal": "signal", "source": "source",
               "model": "model_version", "baseline": "baseline_backend"}
    if key in columns:
        return columns[key]
    if key == "namespace":
        return d.namespace
    if key == "prefix":
        if depth < 1:
            raise ConfigError(f"a prefix grouping needs a depth of at least 1, got {depth}", key="depth")
        return d.prefix(depth)
    raise ConfigError(f"cannot group the ledger by {key!r} (expected one of {', '.join(LEDGER_KEYS)})", key="by")


def _market(factors: Mapping[str, float], p: _Params) -> str:
    if not factors:
        return "CAST(NULL AS DOUBLE PRECISION)"
    cases = " ".join(f"WHEN {p(backend)} THEN {p.real(float(f))}" for backend, f in sorted(factors.items()))
    return f"CASE backend_id {cases} END"


def _scope(q: LedgerQuery, d: Dialect, p: _Params, keys: Sequence[str], *, extra_columns: str = "",
           page: tuple[str, str] | None = None) -> str:
    """The CTEs ``x`` (the entries, times in µs) and ``y`` (those in the period, clipped to it).

    With ``page`` (a keyset condition and a limit), ``x`` is the next page of entries in
    ``(created_at, decision_id)`` order, read through the index, and ``y`` keeps every one of them
    with ``ins`` saying whether it is in the period (the caller pages on by the last one).
    """
    mat = d.materialized
    until = p.bigint(micros(q.until))
    since = p.bigint(micros(q.since) if q.since is not None else _BEFORE_ALL)
    key_columns = "".join(f"{_key_sql(k, q.depth, d)} AS k{i}, " for i, k in enumerate(keys))
    where = ["state IN ('committed', 'closed')"]
    if q.prefix:
        where.append(f"path >= {p(q.prefix)} AND path < {p(prefix_end(q.prefix))}")
    order = ""
    if page is not None:
        if page[0]:
            where.append(page[0])
        order = f" ORDER BY created_at, decision_id LIMIT {page[1]}"
    x = f"""x AS {mat}(
    SELECT {key_columns}{extra_columns}{d.micros('created_at')} AS s,
           CASE WHEN closed_at IS NULL THEN NULL ELSE {d.micros('closed_at')} END AS c,
           size AS sz, write_gco2e AS w, gco2e_month AS r, intensity AS i,
           CASE WHEN baseline_write_gco2e IS NOT NULL AND baseline_gco2e_month IS NOT NULL THEN 1 ELSE 0 END AS hb,
           COALESCE(baseline_write_gco2e, 0) AS bw, COALESCE(baseline_gco2e_month, 0) AS br,
           CASE WHEN CAST(is_stale AS INTEGER) <> 0 OR CAST(fallback AS INTEGER) <> 0 THEN 1 ELSE 0 END AS st,
           CASE WHEN signal = 'marginal' THEN 1 ELSE 0 END AS mg,
           {_market(q.market_factors, p)} AS mf
    FROM {d.table} WHERE {' AND '.join(where)}{order})"""
    y = f"""y AS {mat}(
    SELECT x.*, CASE WHEN c IS NULL OR c > {until} THEN {until} ELSE c END AS e,
           CASE WHEN s > {since} THEN s ELSE {since} END AS lo,
           CASE WHEN s >= {since} THEN 1 ELSE 0 END AS wp,
           CASE WHEN mf IS NULL THEN 0 ELSE 1 END AS hm,
           COALESCE(mf / NULLIF(i, 0), 0) AS mq{{ins}}
    FROM x{{where}})"""
    in_period = f"s < {until} AND (s >= {since} OR c IS NULL OR c > {since})"
    if page is None:
        y = y.format(ins="", where=f" WHERE {in_period}")
    else:
        y = y.format(ins=f",\n           CASE WHEN {in_period} THEN 1 ELSE 0 END AS ins", where="")
    return f"{x},\n{y}"


def totals_sql(q: LedgerQuery, d: Dialect) -> tuple[str, dict[str, object]]:
    """The SQL (and its parameters) of :meth:`~greenroute.ports.Catalog.aggregate` for ``q``."""
    p = _Params(d)
    keys = list(q.keys)
    scope = _scope(q, d, p, keys)
    ks = [f"k{i}" for i in range(len(keys))]
    if not q.buckets:
        group = f" GROUP BY {', '.join(ks)}" if ks else ""
        until = p.bigint(micros(q.until))
        sql = f"""WITH {scope},
z AS (SELECT y.*, CASE WHEN e > lo THEN (e - lo) / {_MONTH} ELSE 0 END AS m,
             CASE WHEN c IS NULL OR c > {until} THEN 1 ELSE 0 END AS he FROM y)
SELECT {''.join(k + ', ' for k in ks)}COUNT(*), SUM(sz), SUM(wp), SUM(wp * w), SUM(r * m), SUM(he * r), SUM(he),
       SUM(hb), SUM(hb * (wp * bw + br * m)), SUM(hb * (wp * w + r * m)), SUM(st), SUM(mg), SUM(hm),
       SUM(mq * (wp * w + r * m)), SUM(wp * i), MIN(s), MAX(s)
FROM z{group}"""
        return sql, p.values

    starts = [micros(b) for b in q.buckets]
    if any(b >= a for a, b in zip(starts[1:], starts, strict=False)) or starts[-1] >= micros(q.until):
        raise ConfigError("time buckets must start in ascending order, before the end of the period", key="buckets")
    index = _bucket_index(q, d, p)
    if index is not None:
        return _fast_buckets(q, d, p, scope, ks, index), p.values
    bounds = [*starts, micros(q.until)]
    values = ", ".join(f"({p.bigint(i)}, {p.bigint(t)})" for i, t in enumerate(bounds))
    last = p.bigint(len(starts))
    close_until = p.bigint(micros(q.until))
    kcols = "".join(k + ", " for k in ks)
    gk = "".join(f"g.{k}, " for k in ks)
    part = f"PARTITION BY {', '.join(ks)} " if ks else ""
    join = " AND ".join([*(d.same(f"seg.{k}", f"bnd.{k}") for k in ks), "bnd.bi = seg.cb"])
    zeros_end = "0, 0, 0, 0, 0"
    zeros_bound = "0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0"
    distinct = f"SELECT DISTINCT {', '.join(ks)} FROM y" if ks else "SELECT 1 AS one"
    sql = f"""WITH {scope},
b(bi, t) AS (VALUES {values}),
g AS ({distinct}),
ev AS (
    SELECT {kcols}s AS t, 2 AS o, CAST(NULL AS BIGINT) AS bi,
           1 AS dn, sz AS dsz, st AS dst, hb AS dhb, mg AS dmg, hm AS dhm,
           r AS dr, hb * br AS dbr, hb * r AS dcr, mq * r AS dmr,
           w AS ww, hb * bw AS wb, hb * w AS wc, mq * w AS wm, i AS wi
    FROM y
    UNION ALL
    SELECT {kcols}c, 0, NULL, -1, -sz, -st, -hb, -mg, -hm, -r, -(hb * br), -(hb * r), -(mq * r), {zeros_end}
    FROM y WHERE c IS NOT NULL AND c <= {close_until}
    UNION ALL
    SELECT {gk}b.t, 1, b.bi, {zeros_bound}
    FROM g CROSS JOIN b
),
run AS (
    SELECT {kcols}t, o, bi, dsz, dst, dhb, dmg, dhm, ww, wb, wc, wm, wi,
           SUM(dn) OVER w AS n, SUM(dsz) OVER w AS nsz, SUM(dst) OVER w AS nst, SUM(dhb) OVER w AS nhb,
           SUM(dmg) OVER w AS nmg, SUM(dhm) OVER w AS nhm,
           SUM(dr) OVER w AS rr, SUM(dbr) OVER w AS rbr, SUM(dcr) OVER w AS rcr, SUM(dmr) OVER w AS rmr,
           MAX(bi) OVER w AS cb, LEAD(t) OVER w AS nt
    FROM ev WINDOW w AS ({part}ORDER BY t, o ROWS UNBOUNDED PRECEDING)
),
seg AS (
    SELECT {kcols}cb,
           SUM(CASE WHEN o = 2 THEN 1 ELSE 0 END) AS wr, SUM(CASE WHEN o = 2 THEN dsz ELSE 0 END) AS wsz,
           SUM(CASE WHEN o = 2 THEN dst ELSE 0 END) AS wst, SUM(CASE WHEN o = 2 THEN dhb ELSE 0 END) AS whb,
           SUM(CASE WHEN o = 2 THEN dmg ELSE 0 END) AS wmg, SUM(CASE WHEN o = 2 THEN dhm ELSE 0 END) AS whm,
           SUM(ww) AS sw, SUM(wb) AS sb, SUM(wc) AS sc, SUM(wm) AS sm, SUM(wi) AS si,
           SUM(rr * (nt - t)) AS ar, SUM(rbr * (nt - t)) AS abr, SUM(rcr * (nt - t)) AS acr,
           SUM(rmr * (nt - t)) AS amr
    FROM run WHERE cb IS NOT NULL AND cb < {last}
    GROUP BY {kcols}cb
),
bnd AS (
    SELECT {kcols}bi, n, nsz, nst, nhb, nmg, nhm,
           LEAD(rr) OVER ({part}ORDER BY bi) AS rend, LEAD(n) OVER ({part}ORDER BY bi) AS nend
    FROM run WHERE o = 1
)
SELECT {''.join(f'seg.{k}, ' for k in ks)}seg.cb, bnd.n + seg.wr, bnd.nsz + seg.wsz, seg.wr, seg.sw,
       seg.ar / {_MONTH}, bnd.rend, bnd.nend, bnd.nhb + seg.whb, seg.sb + seg.abr / {_MONTH},
       seg.sc + seg.acr / {_MONTH}, bnd.nst + seg.wst, bnd.nmg + seg.wmg, bnd.nhm + seg.whm,
       seg.sm + seg.amr / {_MONTH}, seg.si
FROM seg JOIN bnd ON {join}"""
    return sql, p.values


def _bucket_index(q: LedgerQuery, d: Dialect, p: _Params) -> Callable[[str], str] | None:
    """SQL giving the bucket of a time (µs) by arithmetic, when the buckets allow: ``-1`` before the first.

    Buckets after the first (which may start with the period, anywhere) must be all of one width
    (seconds to weeks) or consecutive calendar months in UTC; otherwise ``None``, and the sweep runs.
    """
    starts = [micros(b) for b in q.buckets]
    first = p.bigint(starts[0])
    if len(starts) == 1:
        return lambda t: f"CASE WHEN {t} < {first} THEN -1 ELSE 0 END"
    second = p.bigint(starts[1])
    widths = {b - a for a, b in pairwise(starts[1:])}
    if len(widths) <= 1:
        width = p.bigint(widths.pop() if widths else micros(q.until) - starts[1])
        return lambda t: (f"CASE WHEN {t} < {first} THEN -1 WHEN {t} < {second} THEN 0 "
                          f"ELSE 1 + ({t} - {second}) / {width} END")
    months = [b.astimezone(UTC) for b in q.buckets[1:]]
    numbers = [m.year * 12 + m.month for m in months]
    if all(m == m.replace(day=1, hour=0, minute=0, second=0, microsecond=0) for m in months) and \
            numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        base = p.bigint(numbers[0])
        return lambda t: (f"CASE WHEN {t} < {first} THEN -1 WHEN {t} < {second} THEN 0 "
                          f"ELSE 1 + {d.month_number(t)} - {base} END")
    return None


#: (name, expression per entry) of what a start adds to the entries held, and an end takes away.
_HELD = (("n", "1"), ("sz", "sz"), ("st", "st"), ("hb", "hb"), ("mg", "mg"), ("hm", "hm"))
_RATES = (("r", "r"), ("rb", "hb * br"), ("rc", "hb * r"), ("rm", "mq * r"))
_WRITES = (("w", "w"), ("wb", "hb * bw"), ("wc", "hb * w"), ("wm", "mq * w"), ("wi", "i"))


def _fast_buckets(q: LedgerQuery, d: Dialect, p: _Params, scope: str, ks: list[str],
                  index: Callable[[str], str]) -> str:
    """Time buckets in one scan: starts and ends summed per bucket, then running sums over the buckets.

    With ``H`` what is held when bucket ``k`` starts (the running sum of starts minus ends before it)
    and ``R`` the at-rest rate, the carbon accrued in ``[b_k, b_k+1)`` is
    ``R_end (b_k+1 - F) - R_start (b_k - F) - sum over its events of (t - F) dR``, by parts, with
    every time taken from the first bucket's start ``F`` to keep the products small. An end exactly
    at a bucket's start belongs to the bucket before (``index(c - 1)``), as in the sweep.
    """
    starts = [micros(b) for b in q.buckets]
    ends = [*starts[1:], micros(q.until)]
    rows = [(-1, starts[0], starts[0]), *((i, a, b) for i, (a, b) in enumerate(zip(starts, ends, strict=True)))]
    values = ", ".join(f"({p.bigint(i)}, {p.bigint(a)}, {p.bigint(b)})" for i, a, b in rows)
    f, until = p.bigint(starts[0]), p.bigint(micros(q.until))
    kcols = "".join(k + ", " for k in ks)
    group = f"GROUP BY {kcols}bi"
    held = ", ".join(f"SUM({e}) AS {n}" for n, e in _HELD)
    rates = ", ".join(f"SUM({e}) AS {n}, SUM({e} * (s - {f})) AS t{n}" for n, e in _RATES)
    writes = ", ".join(f"SUM({e}) AS {n}" for n, e in _WRITES)
    end_rates = ", ".join(f"SUM({e}) AS {n}, SUM({e} * (c - {f})) AS t{n}" for n, e in _RATES)
    same = " AND ".join(d.same(f"{{t}}.{k}", f"grid.{k}") for k in ks)

    def joined(t: str) -> str:
        return f"{same.format(t=t)} AND {t}.bi = grid.bi" if ks else f"{t}.bi = grid.bi"

    zero = "COALESCE({t}.{n}, 0)"
    deltas = ", ".join(f"{zero.format(t='sb', n=n)} - {zero.format(t='eb', n=n)} AS d{n}"
                       for n, _ in (*_HELD, *_RATES))
    sums = ", ".join(f"{zero.format(t='sb', n=n)} AS s{n}" for n, _ in (*_HELD, *_WRITES))
    events = ", ".join(f"{zero.format(t='sb', n='t' + n)} - {zero.format(t='eb', n='t' + n)} AS e{n}"
                       for n, _ in _RATES)
    part = f"PARTITION BY {', '.join(ks)} " if ks else ""
    running = ", ".join(f"SUM(d{n}) OVER win AS c{n}" for n, _ in (*_HELD, *_RATES))

    def accrued(n: str) -> str:  # by parts; c = running rate at the bucket's end, c - d = at its start
        return f"(c{n} * (te - {f}) - (c{n} - d{n}) * (tb - {f}) - e{n}) / {_MONTH}"

    def overlapping(n: str) -> str:  # held when the bucket starts, plus started in it
        return f"c{n} - d{n} + s{n}"

    distinct = f"SELECT DISTINCT {', '.join(ks)} FROM y" if ks else "SELECT 1 AS one"
    return f"""WITH {scope},
b(bi, tb, te) AS (VALUES {values}),
g AS ({distinct}),
grid AS (SELECT {''.join(f"g.{k}, " for k in ks)}b.bi, b.tb, b.te FROM g CROSS JOIN b),
sb AS (SELECT {kcols}{index("s")} AS bi, {held}, {rates}, {writes} FROM y {group}),
eb AS (SELECT {kcols}{index("c - 1")} AS bi, {held}, {end_rates}
       FROM y WHERE c IS NOT NULL AND c <= {until} {group}),
j AS (SELECT {''.join(f"grid.{k}, " for k in ks)}grid.bi, grid.tb, grid.te, {deltas}, {sums}, {events}
      FROM grid LEFT JOIN sb ON {joined("sb")} LEFT JOIN eb ON {joined("eb")}),
w AS (SELECT j.*, {running} FROM j WINDOW win AS ({part}ORDER BY bi ROWS UNBOUNDED PRECEDING))
SELECT {kcols}bi, {overlapping("n")}, {overlapping("sz")}, sn, sw, {accrued("r")}, cr, cn, {overlapping("hb")},
       swb + {accrued("rb")}, swc + {accrued("rc")}, {overlapping("st")}, {overlapping("mg")}, {overlapping("hm")},
       swm + {accrued("rm")}, swi
FROM w WHERE bi >= 0"""


def totals_from_rows(q: LedgerQuery, rows: Iterable[Sequence[object]]) -> list[LedgerTotals]:
    """The rows of :func:`totals_sql` as :class:`LedgerTotals`, sorted by key (``None`` first), then bucket."""
    n = len(q.keys)
    out: list[LedgerTotals] = []
    for r in rows:
        key = tuple(None if v is None else str(v) for v in r[:n])
        rest = r[n:]
        if q.buckets:
            bucket: int | None = int(str(rest[0]))
            rest = rest[1:]
            first = last = None
        else:
            bucket = None
            if not rest[0]:
                continue  # an aggregate over nothing (no GROUP BY) still gives one row
            first, last = _time(rest[15]), _time(rest[16])
        out.append(LedgerTotals(
            key=key, bucket=bucket, objects=_int(rest[0]), bytes=_int(rest[1]), writes=_int(rest[2]),
            write_gco2e=_float(rest[3]), at_rest_gco2e=_float(rest[4]), gco2e_month=_float(rest[5]),
            held_objects=_int(rest[6]), baseline_objects=_int(rest[7]), baseline_gco2e=_float(rest[8]),
            compared_gco2e=_float(rest[9]), stale_objects=_int(rest[10]), marginal_objects=_int(rest[11]),
            market_objects=_int(rest[12]), market_gco2e=_float(rest[13]), intensity_sum=_float(rest[14]),
            first_write=first, last_write=last,
        ))
    out.sort(key=lambda t: (tuple((v is not None, v or "") for v in t.key), t.bucket or 0))
    return out


def objects_sql(q: LedgerQuery, d: Dialect, *, after: tuple[object, object] | None,
                limit: int) -> tuple[str, dict[str, object]]:
    """One page of :meth:`~greenroute.ports.Catalog.ledger`: entries ordered by ``(created_at, decision_id)``.

    Args:
        q: The scope (its keys and buckets are ignored).
        d: The database's dialect.
        after: The ``(created_at, decision_id)`` of the previous page's last row, as the database gave them.
        limit: Rows per page.
    """
    p = _Params(d)
    columns = ", ".join(COLUMNS)
    keyset = ""
    if after is not None:
        # The first term alone is a range on the created_at index; an OR of the two would scan every page.
        at, last = p(after[0]), p(after[1])
        keyset = f"created_at >= {at} AND (created_at > {at} OR decision_id > {last})"
    scope = _scope(q, d, p, [], extra_columns=f"{columns}, ", page=(keyset, p.bigint(limit)))
    sql = f"""WITH {scope},
z AS (SELECT y.*, CASE WHEN e > lo THEN (e - lo) / {_MONTH} ELSE 0 END AS m,
             CASE WHEN e > lo THEN e - lo ELSE 0 END AS h FROM y)
SELECT {columns}, ins, h, wp, r * m, CASE WHEN hb = 1 THEN wp * bw + br * m END,
       CASE WHEN hm = 1 THEN mq * (wp * w + r * m) END
FROM z ORDER BY created_at, decision_id"""
    return sql, p.values


def object_from_row(r: Sequence[object]) -> LedgerObject | None:
    """One row of :func:`objects_sql` as a :class:`LedgerObject` (``None``: the entry is outside the period)."""
    n = len(COLUMNS)
    if not _int(r[n]):
        return None
    n += 1
    baseline, market = r[n + 3], r[n + 4]
    return LedgerObject(entry=entry_from_row(list(r[:n])), held_seconds=_int(r[n]) / 1e6,
                        written_in_period=bool(_int(r[n + 1])), at_rest_gco2e=_float(r[n + 2]),
                        baseline_gco2e=None if baseline is None else _float(baseline),
                        market_gco2e=None if market is None else _float(market))


def _int(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(str(value))  # PostgreSQL's SUM of a BIGINT is NUMERIC: exact as text
    except ValueError:
        return int(float(str(value)))


def _float(value: object) -> float:
    return 0.0 if value is None else float(str(value)) if not isinstance(value, float) else value
