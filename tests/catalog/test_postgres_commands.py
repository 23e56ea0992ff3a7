"""``greenroute report``, ``fsck`` and ``reindex`` against a PostgreSQL catalog, as a person runs them.

A ``greenroute.toml`` names the catalog by ``[catalog] url`` and ``schema`` and two local-folder
backends. Writes go through a router built from it; then each command runs through
``greenroute.cli.main`` with ``--json``, and its answer is checked against the catalog and the folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.servers.postgres import TestPostgres

from greenroute import GreenRouter, load_config
from greenroute.adapters.catalog.postgres import PostgresSettings, from_url
from greenroute.cli import main


def _config(tmp_path: Path, postgres: TestPostgres, schema: str) -> Path:
    base = postgres.url.split("?", 1)[0]
    lines = ["[placement]", 'sources = ["embedded"]', "", "[catalog]", f'url = "{base}"', f'schema = "{schema}"',
             "statement_timeout_ms = 10000", ""]
    for backend_id, region, renewable in (("north", "eu-north-1", 100), ("east", "us-east-1", 0)):
        lines += ["[[backends]]", f'id = "{backend_id}"', 'provider = "file"', f'region = "{region}"',
                  f'root = "{(tmp_path / backend_id).as_uri()}"', "pue = 1.2", f"renewable_pct = {renewable}", ""]
    path = tmp_path / "greenroute.toml"
    path.write_text("\n".join(lines))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(list(argv)) == 0, capsys.readouterr().err
    answer: dict[str, object] = json.loads(capsys.readouterr().out)
    return answer


def test_report_fsck_and_reindex_work_against_postgresql(tmp_path: Path, postgres_run: TestPostgres, pg_url: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    schema = PostgresSettings.from_url(pg_url).schema
    config = _config(tmp_path, postgres_run, schema)
    with GreenRouter.from_config(load_config(config)) as router:
        for i in range(6):
            router.write(f"lake/a/{i}.bin", bytes(1000 + i))
        router.write("lake/a/0.bin", bytes(500))  # an overwrite: the old entry is closed, kept as history
        router.delete("lake/a/1.bin")
        router.write("lake/b/late.bin", bytes(10), candidates=["east"])
    with postgres_run.connect() as conn:  # a crash between the object write and its commit
        conn.execute(f"DELETE FROM {schema}.entries WHERE path = 'lake/a/2.bin'")

    report = _run(capsys, "report", "--config", str(config), "--json", "--by", "backend")
    rows = {r["backend"]: r for r in report["rows"]}  # type: ignore[union-attr, index]
    assert rows["north"]["held_objects"] == 4 and rows["east"]["held_objects"] == 1
    assert report["totals"]["writes"] == 7  # type: ignore[index]  # 8 writes, one lost with its entry

    fsck = _run(capsys, "fsck", "--config", str(config), "--json", "--older-than", "0")
    assert fsck["committed"] == ["lake/a/2.bin"] and fsck["unreachable"] == {}

    reindex = _run(capsys, "reindex", "--config", str(config), "--json")
    assert reindex["entries"] == 6 and reindex["foreign"] == []

    catalog = from_url(pg_url)
    try:
        live = {e.path: e.backend_id for e in catalog.list("lake/")}
        assert live == {"lake/a/0.bin": "north", "lake/a/2.bin": "north", "lake/a/3.bin": "north",
                        "lake/a/4.bin": "north", "lake/a/5.bin": "north", "lake/b/late.bin": "east"}
        entry = catalog.lookup("lake/a/0.bin")
        assert entry is not None and entry.size == 500
    finally:
        catalog.close()
    on_disk = sorted(p.relative_to(tmp_path / "north").as_posix() for p in (tmp_path / "north").rglob("*.bin"))
    assert on_disk == ["lake/a/0.bin", "lake/a/2.bin", "lake/a/3.bin", "lake/a/4.bin", "lake/a/5.bin"]

    by_namespace = _run(capsys, "report", "--config", str(config), "--json", "--by", "namespace")
    assert [r["namespace"] for r in by_namespace["rows"]] == ["lake"]  # type: ignore[union-attr, index]
