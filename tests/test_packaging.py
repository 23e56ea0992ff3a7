"""The distribution: a built wheel installs into a fresh venv and works with no source tree.

This builds a real wheel and installs it with pip (pinned by requirements/constraints.txt), so it
takes a little while; it is marked ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_runs_offline(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "-w", str(dist), str(ROOT)], check=True)
    wheels = list(dist.glob("greenroute-*.whl"))
    assert len(wheels) == 1

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-c", str(ROOT / "requirements" / "constraints.txt"), str(wheels[0])], check=True)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in {"GREENROUTE_CONFIG", "PYTHONPATH", "WATTTIME_USERNAME", "WATTTIME_PASSWORD",
                        "ELECTRICITYMAPS_API_KEY"}}
    probe = (
        "import greenroute, greenroute.adapters, importlib.resources as r\n"
        "print(greenroute.__file__)\n"
        "print(greenroute.adapters.__file__)\n"
        "print(r.files('greenroute').joinpath('py.typed').is_file())\n"
        "print(len(greenroute.embedded.embedded_data().regions))\n"
    )
    out = subprocess.run([str(python), "-c", probe], cwd=work, env=env, capture_output=True, text=True, check=True)
    module, adapters, typed, regions = out.stdout.split()
    site = str(env_dir)
    assert module.startswith(site) and adapters.startswith(site)
    assert adapters.endswith(os.path.join("greenroute", "adapters", "__init__.py"))
    assert typed == "True" and int(regions) >= 146

    cli = env_dir / "bin" / "greenroute"
    scores = subprocess.run([str(cli), "scores", "--json"], cwd=work, env=env, capture_output=True, text=True,
                            check=True)
    assert json.loads(scores.stdout)["scores"][0]["backend_id"] == "aws-eu-north-1"
    place = subprocess.run([str(cli), "place", "--size", "10MB", "--json"], cwd=work, env=env,
                           capture_output=True, text=True, check=True)
    decision = json.loads(place.stdout)
    assert decision["backend_id"] == "aws-eu-north-1"
    assert {g["source"] for g in decision["grid_data"].values()} == {"embedded"}
    # The main job runs on the core install alone (no extras): local targets, SQLite catalog.
    demo = subprocess.run([str(cli), "demo", "--files", "200", "--dir", str(work / "demo")], cwd=work, env=env,
                          capture_output=True, text=True, check=True)
    assert "read back 25 sampled files through the catalog: bytes verified" in demo.stdout
    assert (work / "demo" / "catalog.db").is_file()
