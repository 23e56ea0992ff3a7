"""The grid sources' entry points load an HTTP client only for a source that can answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_PROBE = """
import json, sys
from greenroute.config import load_config
cfg = load_config(sys.argv[1] if len(sys.argv) > 1 else None)
sources = cfg.build_sources()
print(json.dumps({"httpx": "httpx" in sys.modules,
                  "sources": {s.name: [type(s).__name__, s.is_available(), getattr(s, "unavailable_reason", "")]
                              for s in sources}}))
"""


def _probe(env: dict[str, str], tmp_path: Path, config: str | None = None) -> dict[str, object]:
    args = [sys.executable, "-c", _PROBE] + ([config] if config else [])
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("WATTTIME_", "ELECTRICITYMAPS_", "GREENROUTE_"))}
    done = subprocess.run(args, env={**clean, **env}, capture_output=True, text=True, check=True, cwd=str(tmp_path))
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_sources_without_credentials_never_import_an_http_client(tmp_path: Path) -> None:
    config = tmp_path / "greenroute.toml"
    config.write_text('[placement]\nsources = ["watttime", "electricitymaps", "embedded"]\n')
    out = _probe({}, tmp_path, str(config))
    assert out["httpx"] is False
    assert out["sources"] == {
        "watttime": ["UnavailableSource", False, "no credentials (set $WATTTIME_USERNAME and $WATTTIME_PASSWORD)"],
        "electricitymaps": ["UnavailableSource", False, "no API key (set $ELECTRICITYMAPS_API_KEY)"],
    }


def test_a_source_with_credentials_gets_its_real_client(tmp_path: Path) -> None:
    config = tmp_path / "greenroute.toml"
    config.write_text('[placement]\nsources = ["electricitymaps", "embedded"]\n')
    out = _probe({"ELECTRICITYMAPS_API_KEY": "k-123"}, tmp_path, str(config))
    assert out["httpx"] is True
    assert out["sources"]["electricitymaps"][:2] == ["ElectricityMapsApiStrategy", True]
