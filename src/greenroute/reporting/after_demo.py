"""What ``greenroute demo`` leaves behind for the report: a config beside its catalog, and the HTML report.

The config (``greenroute.toml`` in the demo folder) names the demo's catalog and its backends, so
``greenroute report --config .greenroute-demo/greenroute.toml`` (and ``--html``, ``--by object``,
...) reads the demo's ledger afterwards. The demo modelled each backend as the cloud it names but
stored its objects in a local folder; the config describes those folders (``provider = "file"``),
so any command run with it touches only them, and says so in a comment.

The HTML report needs matplotlib (the ``report`` extra). On a core-only install the demo says how
to get it instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..model import Backend, utcnow
from .html import matplotlib_available, write_html
from .ledger import ReportRequest

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["CONFIG_NAME", "HTML_NAME", "finish_demo", "write_demo_config"]

CONFIG_NAME = "greenroute.toml"
HTML_NAME = "report.html"


def write_demo_config(root: Path, backends: Sequence[Backend], *, baseline: str, catalog: str = "catalog.db") -> Path:
    """Write ``root/greenroute.toml`` for the demo's catalog and backends; returns its path."""
    def q(text: str) -> str:
        return json.dumps(text)  # a TOML basic string

    lines = [
        "# Written by `greenroute demo`: its catalog and backends, for `greenroute report --config <this file>`.",
        "# The demo modelled each backend as the cloud it names (provider, replication, PUE) but stored its",
        "# objects in the local folders below, so this file describes those folders: any command run with it",
        "# touches only them.",
        "",
        "[placement]",
        'sources = ["embedded"]',
        "",
        "[catalog]",
        f"url = {q('sqlite:///' + str((root / catalog).resolve()))}",
        "",
        "[report]",
        f"baseline = {q(baseline)}",
    ]
    for b in backends:
        lines += ["", "[[backends]]", f"id = {q(b.id)}", 'provider = "file"', f"region = {q(b.region)}",
                  f"root = {q((root / b.id).resolve().as_uri())}", f"pue = {b.pue!r}"]
        if b.renewable_pct is not None:
            lines.append(f"renewable_pct = {b.renewable_pct!r}")
        if b.grid_zone is not None:
            lines.append(f"grid_zone = {q(b.grid_zone)}")
    path = root / CONFIG_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def finish_demo(root: Path, backends: Sequence[Backend], *, baseline: str,
                out: Console | None) -> tuple[Path, Path | None]:
    """Leave the config beside the demo's catalog and write the HTML report; print where they are.

    Returns:
        The config's path, and the HTML report's (``None`` without matplotlib).
    """
    from ..router import catalog_from_url

    config = write_demo_config(root, backends, baseline=baseline)
    html = None
    if matplotlib_available():
        catalog = catalog_from_url(f"sqlite:///{(root / 'catalog.db').resolve()}")
        try:
            html = write_html(catalog, ReportRequest(until=utcnow()), root / HTML_NAME)[0]
        finally:
            catalog.close()
    if out is not None:
        out.print(f"the ledger: greenroute report --config {config} [--by object|day|prefix:2 ...]", markup=False)
        if html is not None:
            out.print(f"HTML report: {html}", style="bold", markup=False)
        else:
            out.print("HTML report: needs matplotlib; pip install 'greenroute[report]', then "
                      f"greenroute report --config {config} --html {root / HTML_NAME}", markup=False)
    return config, html
