"""The HTML report: one self-contained file with four charts, a totals table and a methods note.

The file opens offline: no script, no stylesheet or font to fetch, no image to load. The charts
are matplotlib figures saved as SVG and inlined, with their text kept as text (``svg.fonttype =
none``), so the file stays small and the labels stay searchable. matplotlib is imported only here,
only when a report is written (``pip install 'greenroute[report]'``), and without pyplot, so no GUI
backend or global figure state is involved.

The charts, each labelled with its unit, signal kind and grid data sources:

1. carbon over time by backend, stacked (writes plus at-rest carbon accrued in each bucket);
2. the cumulative saving against the baseline backend, with both cumulative sides;
3. the grid intensity the writes used, per backend over time (one line per backend and signal kind);
4. the top prefixes by carbon.

The time buckets are the finest unit (second to month) that covers the period in at most 60. The
catalog is asked twice: once grouped by backend, prefix and the labels (the totals, the top prefixes
and what every figure rests on), once by backend and time bucket.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .._format import mass_unit, sig
from ..embedded import ATTRIBUTION
from ..errors import ConfigError
from ..ports import Catalog, LedgerTotals
from .export import metadata
from .ledger import Facets, Grouping, Progress, Report, ReportRequest, ReportRow, auto_unit, bucket_starts

__all__ = ["TOP_PREFIXES", "html_report", "matplotlib_available", "write_html"]

#: How many prefixes the fourth chart shows.
TOP_PREFIXES = 10
_PREFIX_DEPTH = 2
_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4",
           "#b2df8a")


def _quiet(_what: str, _done: int, _total: int | None) -> None:
    """No progress display."""


def matplotlib_available() -> bool:
    """Whether the HTML report can be written here (matplotlib is installed)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Data:
    """Everything the HTML report shows, from two catalog queries."""

    report: Report                       # the totals by backend, with the labels
    unit: str                            # the time bucket
    buckets: tuple[datetime, ...]
    ends: tuple[datetime, ...]
    series: dict[str, list[LedgerTotals | None]]  # backend -> per bucket
    prefixes: list[ReportRow]


def _gather(catalog: Catalog, request: ReportRequest, progress: Progress) -> _Data:
    """Two catalog queries: the period by backend and prefix (and labels), then by backend and time."""
    steps = 2
    progress("summing the ledger", 0, steps)
    by_backend = ReportRequest(until=request.until, since=request.since, prefix=request.prefix,
                               by=Grouping("key", "backend"), market_factors=request.market_factors)
    f = Facets(catalog.aggregate(request.query(keys=("backend", "prefix", *Facets.KEYS), depth=_PREFIX_DEPTH)),
               leading=2)
    report = f.report(by_backend, f.groups(0))
    prefixes = sorted(f.groups(1), key=lambda r: -r.total_gco2e)
    progress("summing the ledger", 1, steps)
    start = report.since or request.until
    unit = auto_unit(start, request.until)
    buckets = bucket_starts(start, request.until, unit) if report.total is not None else ()
    if buckets and request.since is not None:
        buckets = (request.since, *buckets[1:])
    series: dict[str, list[LedgerTotals | None]] = {r.label: [None] * len(buckets) for r in report.rows}
    if buckets:
        for t in catalog.aggregate(request.query(keys=("backend",), buckets=buckets)):
            label = t.key[0] or "(none)"
            series.setdefault(label, [None] * len(buckets))[int(t.bucket or 0)] = t
    progress("summing the ledger", steps, steps)
    ends = (*buckets[1:], request.until) if buckets else ()
    return _Data(report, unit, buckets, ends, series, prefixes[:TOP_PREFIXES])


def write_html(catalog: Catalog, request: ReportRequest, path: str | Path, *,
               progress: Progress = _quiet) -> tuple[Path, Report]:
    """Write the HTML report for ``request`` (its grouping is ignored) to ``path``.

    Returns:
        The path, and the period's report by backend (what the totals table shows), so a caller
        that also prints that report needs no other query.

    Raises:
        ConfigError: matplotlib is not installed (``pip install 'greenroute[report]'``).
    """
    text, report = _html(catalog, request, progress)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target, report


def html_report(catalog: Catalog, request: ReportRequest, *, progress: Progress = _quiet) -> str:
    """The HTML report for ``request``, as one self-contained document."""
    return _html(catalog, request, progress)[0]


def _html(catalog: Catalog, request: ReportRequest, progress: Progress) -> tuple[str, Report]:
    if not matplotlib_available():
        raise ConfigError("the HTML report needs matplotlib: pip install 'greenroute[report]'", key="--html")
    data = _gather(catalog, request, progress)
    progress("drawing the charts", 0, 4)
    charts = []
    for i, draw in enumerate((_carbon_over_time, _cumulative_saving, _intensity, _top_prefixes)):
        charts.append(draw(data))
        progress("drawing the charts", i + 1, 4)
    return _page(data, charts), data.report


# -- the charts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Chart:
    title: str
    caption: str
    svg: str


def _labels(report: Report) -> str:
    signals = ", ".join(report.signals) or "none"
    sources = ", ".join(report.sources) or "none"
    return f"signal: {signals} · sources: {sources} · model {', '.join(report.model_versions) or '-'}"


def _figure(height: float = 3.6) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, height), layout="constrained")
    return fig, fig.subplots()


def _svg(fig: Any, name: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"greenroute-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML declaration and doctype: it is inlined in HTML
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    return text.replace("<svg ", f'<svg role="img" aria-labelledby="{name}-title" ', 1)


def _time_axis(ax: Any, data: _Data) -> None:
    import matplotlib.dates as mdates

    # The whole period, so a single point or bucket still spans its bucket (and the locator has a range).
    ax.set_xlim(data.buckets[0], data.ends[-1])
    locator = mdates.AutoDateLocator(minticks=2, maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_xlabel(f"time (UTC), per {data.unit}")
    ax.grid(axis="y", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _no_data(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _scale(largest: float) -> tuple[float, str]:
    """A display unit for values up to ``largest`` gCO2e (as the CLI's tables): the factor, and its name."""
    unit, grams = mass_unit([largest])
    return 1.0 / grams, unit


def _legend_above(ax: Any, n: int, cols: int = 4) -> None:
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize="small", frameon=False,
              ncols=min(cols, max(1, n)))


def _widths(data: _Data) -> list[float]:
    return [(e - s).total_seconds() / 86400.0 * 0.9 for s, e in zip(data.buckets, data.ends, strict=True)]


def _carbon_over_time(data: _Data) -> _Chart:
    fig, ax = _figure()
    title = "Carbon over time by backend (stacked)"
    if data.buckets:
        widths = _widths(data)
        stacks = {backend: [(t.write_gco2e + t.at_rest_gco2e) if t is not None else 0.0 for t in values]
                  for backend, values in sorted(data.series.items())}
        tallest = max((sum(col) for col in zip(*stacks.values(), strict=True)), default=0.0)
        factor, unit = _scale(tallest)
        bottom = [0.0] * len(data.buckets)
        for i, (backend, values) in enumerate(stacks.items()):
            heights = [v * factor for v in values]
            ax.bar(list(data.buckets), heights, width=widths, bottom=bottom, align="edge", label=backend,
                   color=_COLORS[i % len(_COLORS)])
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_ylabel(f"{unit} per {data.unit}\n(location-based)")
        _legend_above(ax, len(stacks))
        _time_axis(ax, data)
    else:
        _no_data(ax, "no ledger entries in this period")
    caption = (f"gCO2e per {data.unit}: writes in the {data.unit} plus at-rest carbon accrued in it, by backend "
               f"(location-based) · {_labels(data.report)}")
    return _Chart(title, caption, _svg(fig, "carbon"))


def _cumulative_saving(data: _Data) -> _Chart:
    fig, ax = _figure()
    baselines = ", ".join(data.report.baselines) or "none"
    title = f"Cumulative saving vs the baseline ({baselines})"
    base, actual = [0.0] * len(data.buckets), [0.0] * len(data.buckets)
    for values in data.series.values():
        for i, t in enumerate(values):
            if t is not None and t.baseline_objects:
                base[i] += t.baseline_gco2e
                actual[i] += t.compared_gco2e
    if data.buckets and any(base):
        # Each bucket's figures are known at its end: the curves start from 0 at the first bucket's start.
        xs = [data.buckets[0], *data.ends]
        cum_base, cum_actual = [0.0, *_cumulate(base)], [0.0, *_cumulate(actual)]
        factor, unit = _scale(max(*cum_base, *cum_actual))
        cum_base = [v * factor for v in cum_base]
        cum_actual = [v * factor for v in cum_actual]
        saved = cum_base[-1] - cum_actual[-1]
        ax.plot(xs, cum_base, color="#777777", marker=".", label=f"baseline: the same writes on {baselines}")
        ax.plot(xs, cum_actual, color="#1b9e77", marker=".", label="as placed")
        ax.fill_between(xs, cum_actual, cum_base, color="#1b9e77", alpha=0.15,
                        label=f"saved: {saved:.4g} {unit} ({100 * saved / cum_base[-1]:.1f} %)"
                        if cum_base[-1] else "saved")
        ax.set_ylabel(f"{unit}, cumulative\n(location-based)")
        _legend_above(ax, 3)
        _time_axis(ax, data)
    else:
        _no_data(ax, "no object has a baseline of the same signal kind: no saving is reported")
    caption = (f"cumulative gCO2e (writes plus at rest) of the objects that have a baseline, as placed and as "
               f"they would have been on {baselines}, priced at each write with the same signal kind and carbon "
               f"model · {_labels(data.report)}")
    return _Chart(title, caption, _svg(fig, "saving"))


def _cumulate(values: Sequence[float]) -> list[float]:
    out, running = [], 0.0
    for v in values:
        running += v
        out.append(running)
    return out


def _intensity(data: _Data) -> _Chart:
    fig, ax = _figure()
    title = "Grid intensity used per backend over time"
    drawn = 0
    for i, (backend, values) in enumerate(sorted(data.series.items())):
        for signal in ("average", "marginal"):
            xs, ys = [], []
            for start, end, t in zip(data.buckets, data.ends, values, strict=True):
                if t is None or not t.writes:
                    continue
                marginal = t.marginal_objects == t.objects
                if (signal == "marginal") != marginal or (t.marginal_objects and not marginal):
                    continue  # a bucket that mixes kinds is not drawn as either
                xs.append(start + (end - start) / 2)
                ys.append(t.intensity_sum / t.writes)
            if xs:
                ax.plot(xs, ys, marker="o", markersize=4, linestyle="-" if signal == "average" else "--",
                        color=_COLORS[i % len(_COLORS)], label=f"{backend} ({signal})")
                drawn += 1
    if drawn:
        ax.set_ylabel("gCO2e/kWh\n(mean of the writes)")
        ax.set_ylim(bottom=0)
        _legend_above(ax, drawn, 3)
        _time_axis(ax, data)
    else:
        _no_data(ax, "no writes in this period")
    caption = ("mean grid intensity the writes used, per backend and signal kind (marginal dashed; a marginal "
               f"and an average value are never on one line) · {_labels(data.report)}")
    return _Chart(title, caption, _svg(fig, "intensity"))


def _top_prefixes(data: _Data) -> _Chart:
    rows = data.prefixes
    fig, ax = _figure(height=max(2.4, 0.9 + 0.32 * len(rows)))
    title = f"Top {len(rows)} prefixes by carbon" if rows else "Top prefixes by carbon"
    if rows:
        factor, unit = _scale(max(r.total_gco2e for r in rows))
        names = [r.label for r in reversed(rows)]
        writes = [r.totals.write_gco2e * factor for r in reversed(rows)]
        rest = [r.totals.at_rest_gco2e * factor for r in reversed(rows)]
        ax.barh(names, writes, color="#7570b3", label="writes")
        ax.barh(names, rest, left=writes, color="#e6ab02", label="at rest, accrued")
        ax.set_xlim(0, max(w + r for w, r in zip(writes, rest, strict=True)) * 1.05)
        ax.set_xlabel(f"{unit} in the period (location-based)")
        _legend_above(ax, 2)
        ax.grid(axis="x", alpha=0.3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    else:
        _no_data(ax, "no ledger entries in this period")
    caption = (f"gCO2e of the writes and the at-rest carbon accrued in the period, by the first {_PREFIX_DEPTH} "
               f"directory levels · {_labels(data.report)}")
    return _Chart(title, caption, _svg(fig, "prefixes"))


# -- the page ---------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 62rem;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.meta { color: #555; font-size: .9rem; }
figure { margin: 1.5rem 0; } figure svg { width: 100%; height: auto; }
figcaption { font-size: .85rem; color: #444; }
figcaption strong { display: block; font-size: 1rem; color: #222; margin-bottom: .2rem; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; } tr.total td { font-weight: bold; border-top: 2px solid #888; }
.note { font-size: .85rem; color: #444; } .small { font-size: .75rem; color: #666; }
"""


def _page(data: _Data, charts: Sequence[_Chart]) -> str:
    report = data.report
    meta = metadata(report)
    e = html.escape
    period = f"{meta['since'] or '-'} to {meta['until']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may load from anywhere: the report is one file that opens offline.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        f"<title>greenroute carbon report, {e(period)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>greenroute carbon report</h1>",
        f'<p class="meta">Period {e(period)}' + (f" · prefix <code>{e(report.request.prefix)}</code>"
                                                  if report.request.prefix else "")
        + f" · location-based gCO2e · carbon model {e(str(meta['model_version'] or '-'))}"
        f" · signal {e(str(meta['signals'] or '-'))} · sources {e(str(meta['sources'] or '-'))}"
        f" · baseline {e(str(meta['baseline'] or 'none'))} · generated {e(str(meta['generated_at']))}</p>",
    ]
    for i, chart in enumerate(charts):
        name = ("carbon", "saving", "intensity", "prefixes")[i]
        parts.append(f'<figure id="{name}"><figcaption><strong id="{name}-title">{e(chart.title)}</strong>'
                     f"{e(chart.caption)}</figcaption>{chart.svg}</figure>")
    parts.append("<h2>Totals by backend</h2>")
    parts.append(_table(report))
    parts.append(_methods(report, data))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(report: Report) -> str:
    e = html.escape
    market = report.has_market
    rows = [*report.rows, *([report.total] if report.total is not None else [])]
    factor, u = _scale(max([r.total_gco2e for r in rows] + [r.totals.baseline_gco2e for r in rows], default=0.0))
    heads = ["backend", "objects", "bytes", f"write {u}", f"at rest {u}", f"{u}/month", f"baseline {u}",
             f"saved {u}", "saved %", "stale or fallback %"] + ([f"market-based {u}"] if market else [])

    def _g(value: float | None) -> str:
        return "–" if value is None else sig(value * factor)

    out = ["<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr></thead><tbody>"]
    for r in rows:
        t = r.totals
        cells = [r.label, f"{t.objects:,}", f"{t.bytes:,}", _g(t.write_gco2e), _g(t.at_rest_gco2e),
                 _g(t.gco2e_month), _g(t.baseline_gco2e if t.baseline_objects else None), _g(r.saved_gco2e),
                 _pct(r.saved_pct), _pct(r.stale_or_fallback_pct)] + ([_g(r.market_gco2e)] if market else [])
        css = ' class="total"' if r is report.total else ""
        out.append(f"<tr{css}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        out.append(f'<tr><td colspan="{len(heads)}">no ledger entries in this period</td></tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _methods(report: Report, data: _Data) -> str:
    e = html.escape
    baselines = ", ".join(report.baselines) or "none"
    total = report.total
    compared = ""
    if total is not None and total.totals.baseline_objects < total.totals.objects:
        compared = (f" Only {total.totals.baseline_objects} of the {total.totals.objects} objects have a baseline "
                    "of the same signal kind; the others are left out of the saving on both sides.")
    market = (" Backends that declare a market-based factor (supplier or residual mix) get a separate "
              "market-based column, computed from the same energy; it never changes a location-based figure."
              if report.has_market else "")
    attribution = f'<p class="small">{e(ATTRIBUTION)}</p>' if "embedded" in report.sources else ""
    return f"""<h2>Methods</h2>
<p class="note">Every figure is <strong>location-based</strong> gCO2e, as in the GHG Protocol Scope 2 Guidance's
location-based method: the grid intensity where the bytes are written and kept. An operator's renewable share
and contractual claims never lower it.{e(market)} Each write is estimated at decision time with the carbon model
of Cloud Carbon Footprint (writes: 0.001 kWh per GB x PUE; at rest: 0.65 Wh per TB-hour x replication x PUE),
times the grid intensity the decision used (its signal kind and source are shown with each chart).
At-rest carbon accrues at the object's monthly rate (730 h) for the time it was actually held, from its commit
to its overwrite, delete or move, or to the end of the period; deleted objects stay in the ledger.</p>
<p class="note">The baseline ({e(baselines)}) is what the same write would have emitted there, priced at the same
time with the same signal kind and the same carbon model; a marginal figure is never compared with an average
one.{e(compared)} The charts use {e(data.unit)} buckets in UTC. Carbon models:
{e(", ".join(report.model_versions) or "-")}.</p>
{attribution}"""
