"""After ``greenroute demo``: a config beside its catalog that ``greenroute report`` reads, and the HTML report."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from greenroute.cli import main
from greenroute.config import load_config
from greenroute.demo import BASELINE, demo_backends, run_demo


def test_the_demo_leaves_a_config_and_writes_the_html_report(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(file=io.StringIO(), width=200)
    demo = run_demo(tmp_path / "demo", files=40, console=console)
    root = tmp_path / "demo"
    config, html = root / "greenroute.toml", root / "report.html"
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"HTML report: {html}" in printed and f"--config {config}" in printed
    assert html.is_file() and html.read_text().count("<svg") == 4

    cfg = load_config(config)
    assert cfg.baseline == BASELINE and cfg.catalog_url.endswith(str(root / "catalog.db"))
    raw = tomllib.loads(config.read_text())
    assert raw["report"] == {"baseline": BASELINE}
    # every backend is the local folder the demo stored it in, so commands with this config touch only those
    assert {b["provider"] for b in raw["backends"]} == {"file"}
    assert all(b.root.startswith(root.resolve().as_uri()) for b in cfg.backends)
    assert [b.id for b in cfg.backends] == [b.id for b in demo_backends(root)]

    capsys.readouterr()
    assert main(["report", "--config", str(config), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["objects"] == demo.files == 40
    assert doc["report"]["baseline"] == BASELINE
    # the ledger's baseline is the demo's: the same writes priced on us-east-1 at decision time
    assert doc["totals"]["write_gco2e"] == pytest.approx(demo.write_gco2e, rel=1e-9)
    saved_writes = demo.baseline_write_gco2e - demo.write_gco2e
    assert doc["totals"]["saved_gco2e"] == pytest.approx(saved_writes, rel=1e-3)  # plus seconds at rest
