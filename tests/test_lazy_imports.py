"""What ``import greenroute`` and ``greenroute place --json`` load: nothing until it is used (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("boto3", "botocore", "s3fs", "gcsfs", "adlfs", "azure", "google", "fsspec", "pandas", "pyarrow", "numpy",
         "rich", "httpx", "tenacity", "asyncio", "importlib.metadata", "sqlite3")


def _run(code: str, cwd: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter; the last stdout line, split on commas."""
    env = {k: v for k, v in os.environ.items() if k not in {"GREENROUTE_CONFIG", "PYTHONPATH"}}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines, f"no output from {code!r}: {out.stderr}"
    return [x for x in lines[-1].split(",") if x]


def _loaded_after(code: str) -> str:
    return (f"{code}\nimport sys\n"
            f"print(','.join(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r} "
            "or m.startswith('greenroute.')))\n")


def test_import_greenroute_loads_only_the_package(tmp_path: Path) -> None:
    assert _run(_loaded_after("import greenroute"), tmp_path) == []


def test_names_and_submodules_load_on_first_access(tmp_path: Path) -> None:
    code = _loaded_after(
        "import greenroute\n"
        "assert greenroute.__version__\n"
        "service = greenroute.GreenPlacementService\n"
        "assert greenroute.GreenPlacementService is service and service.__module__ == 'greenroute.placement'\n"
        "assert len(greenroute.embedded.embedded_data().regions) > 100\n"
        "try:\n"
        "    greenroute.NoSuchThing\n"
        "except AttributeError as exc:\n"
        "    assert 'NoSuchThing' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n")
    loaded = set(_run(code, tmp_path))
    assert {"greenroute.placement", "greenroute.embedded"} <= loaded
    assert "greenroute.router" not in loaded and "greenroute.config" not in loaded
    assert not loaded & set(HEAVY)


def test_star_import_gives_every_exported_name(tmp_path: Path) -> None:
    code = ("from greenroute import *\n"
            "import greenroute\n"
            "print(','.join(n for n in greenroute.__all__ if n not in globals()))\n")
    assert _run(code, tmp_path) == []


@pytest.mark.parametrize("command", ["place", "scores"])
def test_json_commands_without_live_sources_load_no_sdk_http_client_or_rich(tmp_path: Path, command: str) -> None:
    config = tmp_path / "embedded.toml"
    config.write_text('[placement]\nsources = ["embedded"]\n')
    args = [command, "--json", "--config", str(config)] + (["--size", "10MB"] if command == "place" else [])
    code = _loaded_after(f"from greenroute.cli import main\nassert main({args!r}) == 0\n")
    env = {k: v for k, v in os.environ.items() if k not in {"GREENROUTE_CONFIG", "PYTHONPATH"}}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True)
    *document, loaded_line = out.stdout.strip().splitlines()
    assert json.loads("\n".join(document))  # the command's own output is whole
    loaded = {m for m in loaded_line.split(",") if m}
    assert not {m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY}, loaded
    assert not {m for m in loaded if m.startswith("greenroute.adapters")}, loaded
