"""The ``greenroute`` command: grid data, scores and placement decisions from the terminal.

Every command takes ``--config FILE`` and ``--json``. With no config file it uses the five
pre-registered profiles and the embedded annual averages, so it works on a fresh install with no
keys and no network.

With ``--json`` a command prints one JSON document on stdout and nothing else (errors too:
``{"error": ..., "message": ...}``). Read-only commands (``report``, ``fsck``, ``config check``) never
create a catalog or any other file; ``reindex`` creates a catalog file only when the backends hold
greenroute objects to put in it.

Exit codes: 0 success, 1 no answer (for example no source knew any region asked for),
2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._format import mass_unit, sig
from .config import KNOWN_SOURCES, GreenrouteConfig, load_config
from .embedded import ATTRIBUTION
from .errors import ConfigError, GreenrouteError
from .model import Backend, CarbonPlacementDecision, Provider, SignalKind

if TYPE_CHECKING:  # rich is imported only by the functions that print text, so --json never loads it
    from rich.console import Console

__all__ = ["main", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}


def parse_size(text: str) -> int:
    """Parse a size like ``10MB`` (decimal), ``10MiB`` (binary) or ``1500`` (bytes).

    Example:
        >>> parse_size("10MB"), parse_size("1KiB")
        (10000000, 1024)
    """
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 10MB, 1.5GiB or 4096)")
    unit = (m.group(2) or "").lower().removesuffix("b")
    if unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"unknown size unit in {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="config file (default: $GREENROUTE_CONFIG, "
                        "then ./greenroute.toml, then the built-in profiles)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")

    parser = argparse.ArgumentParser(prog="greenroute", description="Carbon-aware object storage placement.")
    parser.add_argument("--version", action="version", version=f"greenroute {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    grid = sub.add_parser("grid", parents=[common], help="grid carbon intensity of regions")
    grid.add_argument("regions", nargs="+", metavar="REGION")
    grid.add_argument("--source", help="ask only this source (watttime, electricitymaps, ukcarbon, "
                      "embedded, manual); it need not be in placement.sources")

    sub.add_parser("scores", parents=[common], help="configured backends, best first")

    place = sub.add_parser("place", parents=[common], help="where a write would go, and its gCO2e")
    place.add_argument("--size", type=parse_size, required=True, help="write size, e.g. 10MB or 1GiB")
    place.add_argument("--retention-days", type=float, default=None)
    place.add_argument("--candidates", nargs="+", default=None, metavar="BACKEND",
                       help="backend ids to choose from (default: all)")
    place.add_argument("--objective", choices=["score", "min_carbon"], default=None)

    report = sub.add_parser("report", parents=[common], help="the carbon ledger: totals, savings vs a baseline, "
                            "time series, CSV/Parquet exports, an HTML report")
    report.add_argument("prefix", nargs="?", default="", help="only paths under this prefix")
    from .reporting.command import add_arguments as report_arguments

    report_arguments(report)

    fsck = sub.add_parser("fsck", parents=[common], help="reconcile the catalog with the backends after crashes")
    fsck.add_argument("--older-than", type=float, default=300.0, metavar="SECONDS",
                      help="leave younger objects and reservations alone: they may be in flight (default 300)")
    fsck.add_argument("--strict", action="store_true", help="exit 2 when a backend could not be checked")

    reindex = sub.add_parser("reindex", parents=[common], help="rebuild the catalog from the backends' own metadata")
    reindex.add_argument("--strict", action="store_true", help="exit 2 when a backend could not be listed")

    demo = sub.add_parser("demo", parents=[common], help="write a generated dataset through the router")
    demo.add_argument("--dir", default=".greenroute-demo",
                      help="demo folder (default .greenroute-demo): new, empty, or made by an earlier demo run, "
                      "whose own files are replaced; any other folder is refused")
    demo.add_argument("--files", type=_positive_int, default=240, help="how many files to write (default 240)")
    demo.add_argument("--live", action="store_true", help="use the configured grid sources (and say why not, "
                      "when they cannot answer)")

    rebalance = sub.add_parser("rebalance", help="move long-lived objects to greener backends when the move pays")
    rebalance_sub = rebalance.add_subparsers(dest="rebalance_command", required=True)
    rb_plan = rebalance_sub.add_parser("plan", parents=[common], help="propose the moves that pay for themselves")
    rb_plan.add_argument("--prefix", default="", help="only paths under this prefix")
    rb_plan.add_argument("--min-saving-g", type=float, default=0.0, metavar="G",
                         help="a move must save more than G gCO2e net of its own carbon (default 0)")
    rb_plan.add_argument("--horizon-days", type=float, default=None, metavar="DAYS",
                         help="horizon of objects with no retention (default: [rebalance] default_horizon_days)")
    rb_plan.add_argument("--candidates", nargs="+", default=None, metavar="BACKEND",
                         help="backend ids objects may move to (default: all)")
    rb_plan.add_argument("--output", default="rebalance-plan.json", metavar="FILE",
                         help="where to write the plan (default rebalance-plan.json)")
    rb_apply = rebalance_sub.add_parser("apply", parents=[common], help="carry out a plan, crash-safe")
    rb_apply.add_argument("plan", metavar="PLAN", help="a plan file written by 'rebalance plan'")
    rb_apply.add_argument("--window-hours", type=float, default=None, metavar="H",
                          help="wait for the greenest forecast hour within the next H hours (Ctrl-C stops)")
    rb_apply.add_argument("--workers", type=int, default=4, help="moves in flight at once (default 4)")

    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("check", parents=[common], help="validate the configuration")

    catalog = sub.add_parser("catalog", help="catalog commands")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    migrate = catalog_sub.add_parser("migrate", parents=[common], help="copy every entry, history included, into "
                                     "another catalog, then verify (idempotent)")
    migrate.add_argument("--from", dest="source", required=True, metavar="URL", help="e.g. sqlite:///old.db")
    migrate.add_argument("--to", dest="target", default=None, metavar="URL",
                         help="e.g. postgresql://user@host:5432/db (default: the configured [catalog] url)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    out = _LazyConsole()
    try:
        cfg = load_config(args.config)
        if args.command == "grid":
            return _grid(cfg, args, out)
        if args.command == "scores":
            return _scores(cfg, args, out)
        if args.command == "place":
            return _place(cfg, args, out)
        if args.command == "report":
            return _report(cfg, args, out)
        if args.command == "fsck":
            return _fsck(cfg, args, out)
        if args.command == "reindex":
            return _reindex(cfg, args, out)
        if args.command == "rebalance":
            return _rebalance_plan(cfg, args, out) if args.rebalance_command == "plan" else \
                _rebalance_apply(cfg, args, out)
        if args.command == "demo":
            return _demo(cfg, args, out)
        if args.command == "catalog":
            from .catalog_migrate import migrate_command

            return migrate_command(cfg, args)
        return _config_check(cfg, args, out)
    except GreenrouteError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        else:
            from rich.console import Console
            from rich.markup import escape

            # escaped: a message may hold brackets ("pip install 'greenroute[report]'")
            Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        return 2


class _LazyConsole:
    """The stdout console, made (and rich imported) on first use, so ``--json`` runs never load rich."""

    def __init__(self) -> None:
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            console = Console(highlight=False)
            if not console.is_terminal:
                console = Console(highlight=False, width=120)  # pipes and CI logs: do not squeeze tables to 80
            self._console = console
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*objects, **kwargs)


def _demo(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    from .demo import run_demo

    if args.json:
        report = run_demo(Path(args.dir), files=args.files, live=args.live, config=cfg, quiet=True)
        print(json.dumps(report.to_dict(), indent=2))
    else:
        run_demo(Path(args.dir), files=args.files, live=args.live, config=cfg, console=out.console)
    return 0


def _grid(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    if args.source in KNOWN_SOURCES and args.source not in cfg.placement.sources:
        # Asked by name, a source needs no place in the placement chain: keyless ones (ukcarbon)
        # answer with no configuration, the others say which key is missing.
        placement = dataclasses.replace(cfg.placement, sources=(*cfg.placement.sources, args.source))
        cfg = dataclasses.replace(cfg, placement=placement)
    service = cfg.build_service()
    try:
        rows = _grid_rows(cfg, service, args.regions, args.source)
    finally:
        service.signals.close()
    answered = sum(1 for r in rows if "error" not in r)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0 if answered else 1
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Grid carbon intensity")
    for col in ("region", "zone", "gCO2e/kWh", "signal", "source", "age", "note"):
        table.add_column(col, no_wrap=True, justify="right" if col in {"gCO2e/kWh", "age"} else "left")
    for r in rows:
        if "error" in r:
            table.add_row(r["region"], "", "", "", "", "", "[red]error, see below[/]")
            continue
        note = "stale" if r["is_stale"] else ("estimated" if r["is_estimated"] else "")
        table.add_row(r["region"], r["grid_zone"] or "", f"{r['carbon_intensity_g_per_kwh']:g}",
                      r["signal"], r["source"], _age(r["age_seconds"]), note)
    out.print(table)
    for r in rows:
        if "error" in r:
            out.print(f"[red]{r['region']}[/]: {r['error']}")
        for reason in r.get("fallback_reasons", ()):
            out.print(f"[dim]{r['region']}: fallback: {reason}[/]")
    _attribution(out, rows)
    return 0 if answered else 1


def _grid_rows(cfg: GreenrouteConfig, service: Any, regions: Sequence[str], source_name: str | None) -> list[Any]:
    """One row per region: the value (and any fallback) or the error, never an exception."""
    signals = service.signals
    source = None
    if source_name:
        sources = {s.name: s for s in [*signals.sources, signals.embedded]}
        if source_name not in sources:
            raise ConfigError(f"unknown source {source_name!r} (known: {', '.join(KNOWN_SOURCES)})", key="--source")
        source = sources[source_name]
    rows: list[dict[str, Any]] = []
    for region in regions:
        backend = next((b for b in cfg.backends if b.region == region), None)
        if backend is None:
            backend = Backend(id=region, provider=Provider.MEMORY, region=region, root="memory://", pue=1.0)
        try:
            if source is None:
                resolution = signals.resolve([backend])
                value = resolution.values.get(backend.id)
                if value is None:
                    rows.append({"region": region, "error": resolution.missing.get(backend.id, "no grid data")})
                    continue
                reasons = list(resolution.fallback_reasons)
            else:
                zone = backend.watttime_region if source.signal is SignalKind.MARGINAL else backend.grid_zone
                value = signals.get(source, region, zone)
                reasons = []
            rows.append({"region": region, **value.to_dict(), "age_seconds": value.age_seconds(),
                         "fallback_reasons": reasons})
        except GreenrouteError as exc:
            rows.append({"region": region, "error": f"{type(exc).__name__}: {exc}"})
    return rows


def _scores(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    service = cfg.build_service()
    scores = service.get_green_scores()
    grid = service.signals.resolve(service.backends)
    if args.json:
        print(json.dumps({
            "signal": grid.signal.value,
            "fallback_reasons": list(grid.fallback_reasons),
            "weights": service.registry.weights.to_dict(),
            "scores": [{**s.to_dict(), "grid": grid.values[s.backend_id].to_dict()} for s in scores],
        }, indent=2))
        return 0
    from rich import box
    from rich.table import Table

    w = service.registry.weights
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  title=f"Green scores, best first (signal: {_signal_label(grid.values.values())})",
                  caption=f"pts: each input's points in the score (weights: renewable {w.renewable:g}, carbon "
                          f"{w.carbon:g}, PUE {w.pue:g}, WUE {w.wue:g}); * stale")
    for col in ("backend", "region", "score", "renew. %", "renew. pts", "g/kWh", "carbon pts", "PUE",
                "PUE pts", "WUE pts"):
        table.add_column(col, no_wrap=True, justify="left" if col in {"backend", "region"} else "right")
    for s in scores:
        g = grid.values[s.backend_id]
        table.add_row(s.backend_id, s.region, f"{s.score:.2f}", f"{s.renewable_pct:.4g}",
                      f"{s.renewable_component:.2f}", f"{s.carbon_intensity_g_per_kwh:g}" + ("*" if g.is_stale else ""),
                      f"{s.carbon_component:.2f}", f"{s.pue:g}", f"{s.pue_component:.2f}", f"{s.wue_component:.2f}")
    out.print(table)
    for reason in grid.fallback_reasons:
        out.print(f"fallback: {reason}")
    _attribution(out, [v.to_dict() for v in grid.values.values()])
    return 0


def _place(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    service = cfg.build_service()
    decision = service.select_greenest_backend(args.candidates, args.size, retention_days=args.retention_days,
                                               objective=args.objective)
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2))
        return 0
    _print_decision(decision, out)
    return 0


def _print_decision(d: CarbonPlacementDecision, out: _LazyConsole) -> None:
    from rich import box
    from rich.table import Table

    g = d.grid
    # One unit for the decision and its alternatives, so they compare at a glance.
    unit, scale = mass_unit([d.write_gco2e, d.at_rest_gco2e_per_month, d.retention_gco2e,
                             *(a.write_gco2e for a in d.alternatives), *(a.retention_gco2e for a in d.alternatives)])

    def grams(value: float) -> str:
        return sig(value / scale)

    out.print(f"[bold green]{d.backend_id}[/] ({d.backend.region}) -> {d.target_url}")
    out.print(f"  objective {d.objective.value}, score {d.score.score:.2f}, "
              f"{g.carbon_intensity_g_per_kwh:g} gCO2e/kWh ({g.signal.value}, {g.source.value})")
    out.print(f"  write of {_bytes(d.data_size_bytes)}: {grams(d.write_gco2e)} {unit}; at rest "
              f"{grams(d.at_rest_gco2e_per_month)} {unit} per month"
              + (f", {grams(d.retention_gco2e)} {unit} over {d.retention_days:g} days" if d.retention_days else ""))
    table = Table(box=box.SIMPLE_HEAD, title="Alternatives")
    columns = ["backend", "score", f"write {unit}"]
    if d.retention_days:
        columns.append(f"{d.retention_days:g} days at rest {unit}")
    for col in (*columns, "reason"):
        table.add_column(col, justify="right" if unit in col or col == "score" else "left")
    for a in d.alternatives:
        rest = [grams(a.retention_gco2e)] if d.retention_days else []
        table.add_row(a.backend_id, f"{a.score:.2f}", grams(a.write_gco2e), *rest, a.reason)
    for backend_id, why in sorted(d.ineligible.items()):
        table.add_row(backend_id, "-", "-", *(["-"] if d.retention_days else []), f"ineligible: {why}")
    out.print(table)
    for reason in d.fallback_reasons:
        out.print(f"fallback: {reason}")
    _attribution(out, [v.to_dict() for v in d.grid_data.values()])


def _catalog_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` catalog URL (parsed as the SQLite adapter parses it), else ``None``."""
    if not url.startswith("sqlite://"):
        return None
    location = url.removeprefix("sqlite://")
    if location in ("", "/:memory:"):
        return None
    return Path(location.removeprefix("/"))


def _no_catalog(cfg: GreenrouteConfig) -> str | None:
    """Why there is no catalog to read yet (without creating one), or ``None`` when there is one."""
    url = cfg.catalog_url
    if url.startswith("sqlite://") and _catalog_file(url) is None:
        if cfg.path is None:
            return ("no catalog yet: with no config file the catalog is in memory and ends with each process; "
                    "set catalog.url to keep one")
        return "no catalog yet: the catalog is in memory and ends with each process"
    path = _catalog_file(url)
    if path is not None and not path.exists():
        return f"no catalog yet at {path}"
    return None


def _report(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    from .reporting.command import report_command

    return report_command(cfg, args, lambda: out.console, missing=_no_catalog(cfg))


def _fsck(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    from .router import FsckReport, GreenRouter

    missing = _no_catalog(cfg) if _catalog_file(cfg.catalog_url) is not None else None
    if missing is not None:  # nothing to reconcile, and fsck must not create the file
        if args.json:
            print(json.dumps({**dataclasses.asdict(FsckReport()), "catalog": cfg.catalog_url,
                              "catalog_exists": False, "message": missing}, indent=2))
        else:
            out.print(f"{missing}: nothing to check ('greenroute reindex' builds one from the backends' own metadata)")
        return 0
    with GreenRouter.from_config(cfg) as router:
        report = router.fsck(older_than_seconds=args.older_than)
    if args.json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        out.print(f"adopted {len(report.committed)} uncommitted objects, repaired {len(report.repaired)} entries, "
                  f"removed {len(report.orphans_deleted)} orphan copies, dropped {len(report.dropped)} stale "
                  f"reservations; left {len(report.skipped_recent)} recent ones alone")
        for label, items in (("adopted", report.committed), ("repaired", report.repaired),
                             ("removed", report.orphans_deleted), ("dropped", report.dropped)):
            for item in items:
                out.print(f"  {label:<8} {item}")
        _print_unreachable(report.unreachable, out)
    return 2 if args.strict and report.unreachable else 0


def _reindex(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    from .router import GreenRouter, catalog_from_url

    missing = _no_catalog(cfg) if _catalog_file(cfg.catalog_url) is not None else None
    if missing is not None:
        # Rebuild into memory first: the catalog file is created only if the backends hold
        # greenroute objects to put in it, never as a side effect of finding none.
        with GreenRouter(cfg.build_service(), catalog_from_url("sqlite://")) as dry:
            report = dry.reindex()
        if report.entries:
            missing = None
    if missing is None:
        with GreenRouter.from_config(cfg) as router:
            report = router.reindex()
    if args.json:
        print(json.dumps({**dataclasses.asdict(report), "catalog": cfg.catalog_url,
                          "catalog_exists": missing is None, **({"message": missing} if missing else {})}, indent=2))
    else:
        if missing is not None:
            out.print(f"{missing}; the backends hold no greenroute objects, so none was created")
        else:
            out.print(f"rebuilt {report.entries} catalog entries from the backends' own metadata")
        if report.duplicates:
            out.print(f"  {len(report.duplicates)} paths were on two backends; kept the newest copy of each")
        if report.foreign:
            out.print(f"  {len(report.foreign)} objects without greenroute metadata were left alone")
        if report.kept:
            out.print(f"  {len(report.kept)} paths kept their entry on an unreachable backend")
        _print_unreachable(report.unreachable, out)
    return 2 if args.strict and report.unreachable else 0


def _print_unreachable(unreachable: dict[str, str], out: _LazyConsole) -> None:
    for backend_id, why in unreachable.items():
        out.print(f"  [yellow]skipped {backend_id}[/yellow]: could not be reached ({why}); its entries are kept")


def _rebalance_plan(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    from .router import GreenRouter

    with GreenRouter.from_config(cfg) as router:
        plan = router.rebalance_plan(prefix=args.prefix, min_saving_g=args.min_saving_g,
                                     horizon_days=args.horizon_days, candidates=args.candidates)
    written = plan.save(args.output)
    if args.json:
        print(json.dumps({**plan.to_dict(), "output": str(written)}, indent=2))
        return 0
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title=f"Rebalance plan ({plan.signal.value} signal)")
    for col in ("path", "from", "to", "MB", "saves gCO2e", "move gCO2e", "net gCO2e", "payback days"):
        table.add_column(col, justify="left" if col in {"path", "from", "to"} else "right")
    for m in plan.moves[:50]:
        table.add_row(m.path, m.from_backend, m.to_backend, f"{m.size / 1e6:.3g}", f"{m.saving_gco2e:.4g}",
                      f"{m.move_gco2e:.4g}", f"{m.net_gco2e:.4g}", f"{m.payback_days:.3g}")
    out.print(table)
    if len(plan.moves) > 50:
        out.print(f"  ... and {len(plan.moves) - 50} more moves (all in the plan file)")
    t = plan.totals
    out.print(f"{t['moves']:.0f} of {t['considered']:.0f} objects move ({t['bytes'] / 1e6:.4g} MB): they save "
              f"{t['saving_gco2e']:.4g} gCO2e at rest, the moves cost {t['move_gco2e']:.4g}, net "
              f"{t['net_gco2e']:.4g} gCO2e")
    for code, count in plan.kept_by_code().items():
        out.print(f"  {count} stay: {code}")
    for reason in plan.fallback_reasons:
        out.print(f"fallback: {reason}")
    out.print(f"plan written to {written}; run: greenroute rebalance apply {written}")
    return 0


def _rebalance_apply(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    from .rebalance import MoveOutcome, RebalancePlan, Window
    from .router import GreenRouter

    plan = RebalancePlan.load(args.plan)
    show = not args.json and out.console.is_terminal  # a bar on a terminal; quiet when piped (and no rich)

    def waiting(window: Window) -> None:
        if not args.json:
            out.print(f"waiting for the greenest window, {window.start.isoformat(timespec='minutes')} "
                      f"({window.source}; est. {window.gco2e:.4g} vs {window.gco2e_now:.4g} gCO2e now); Ctrl-C stops")

    with GreenRouter.from_config(cfg) as router:
        if not show:
            report = router.rebalance_apply(plan, window_hours=args.window_hours, workers=args.workers,
                                            on_wait=waiting)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(TextColumn("rebalancing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=out.console, transient=True) as bar:
                task = bar.add_task("moves", total=len(plan.moves))

                def advanced(_outcome: MoveOutcome) -> None:
                    bar.advance(task)

                report = router.rebalance_apply(plan, window_hours=args.window_hours, workers=args.workers,
                                                progress=advanced, on_wait=waiting)
    code = 1 if report.failed or report.interrupted else 0
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return code
    if report.window is not None:
        w = report.window
        out.print(f"window: {w.start.isoformat(timespec='minutes')} to {w.end.isoformat(timespec='minutes')} from "
                  f"the {w.source}" + (f" ({w.fallback})" if w.fallback else ""))
    out.print(f"moved {len(report.moved)}, skipped {len(report.skipped)}, failed {len(report.failed)}; the moves "
              f"emitted {report.gco2e:.4g} gCO2e" + (" (interrupted)" if report.interrupted else ""))
    for o in [*report.failed, *report.skipped][:40]:
        out.print(f"  {o.status:<7} {o.path}: {o.reason}")
    for backend_id, why in report.unreachable.items():
        out.print(f"  [yellow]unreachable {backend_id}[/yellow]: {why}; its moves were skipped")
    return code


def _config_check(cfg: GreenrouteConfig, args: argparse.Namespace, out: _LazyConsole) -> int:
    sources = cfg.build_sources()
    try:
        listed = [{"name": s.name, "signal": s.signal.value, "available": s.is_available()} for s in sources]
    finally:
        for source in sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()
    # The embedded annual averages are always there, as the last resort of every decision.
    listed.append({"name": "embedded", "signal": SignalKind.AVERAGE.value, "available": True})
    missing = _no_catalog(cfg)
    report: dict[str, Any] = {
        "path": cfg.path,
        "backends": [b.to_dict() for b in cfg.backends],
        "sources": listed,
        "signal": cfg.placement.signal.value,
        "objective": cfg.placement.objective.value,
        "catalog_url": cfg.catalog_url,
        "catalog_exists": None if _catalog_file(cfg.catalog_url) is None and missing is None else missing is None,
    }
    if args.json:
        print(json.dumps({"ok": True, **report}, indent=2))
        return 0
    out.print(f"[green]ok[/]: {cfg.path or 'no config file; using the pre-registered profiles'}")
    out.print(f"  {len(cfg.backends)} backends: {', '.join(b.id for b in cfg.backends)}")
    for s in listed:
        out.print(f"  source {s['name']} ({s['signal']}): {'available' if s['available'] else 'unavailable'}")
    out.print(f"  catalog {cfg.catalog_url}" + (f" ({missing})" if missing else ""))
    return 0


def _attribution(out: _LazyConsole, values: Sequence[dict[str, Any]]) -> None:
    if any(v.get("source") == "embedded" for v in values):
        out.print(f"[dim]{ATTRIBUTION}[/]")


def _signal_label(values: Any) -> str:
    kinds = sorted({f"{v.signal.value} from {v.source.value}" for v in values})
    return ", ".join(kinds) or "none"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.4g} {unit}"
        value /= 1000
    return f"{n} B"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
