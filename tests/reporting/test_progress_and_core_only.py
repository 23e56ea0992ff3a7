"""The report's progress bar (on a terminal only), and the report on an install without matplotlib."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from greenroute.cli import main
from greenroute.demo import BASELINE as DEMO_BASELINE
from greenroute.router import GreenRouter

from .conftest import T0, FrozenClock
from .test_exports import _config
from .test_ledger_arithmetic import scenario

UNTIL = (T0 + timedelta(hours=10)).isoformat()


def _run_on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Run ``python -m greenroute.cli ...`` with stderr on a pseudo-terminal; returns its code and what it drew."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from greenroute.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", *argv], stdout=subprocess.DEVNULL, stderr=follower,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    drawn = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    return proc.wait(timeout=60), drawn.decode("utf-8", "replace")


def test_a_progress_bar_on_a_terminal_and_none_when_piped(router: GreenRouter, clock: FrozenClock, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    scenario(router, clock)
    config = _config(tmp_path, Path(str(router.catalog.path)))  # type: ignore[attr-defined]
    argv = ["report", "--config", str(config), "--until", UNTIL, "--by", "object", "--format", "csv",
            "--output", str(tmp_path / "o.csv"), "--html", str(tmp_path / "r.html")]
    code, drawn = _run_on_a_terminal(argv)
    assert code == 0
    assert "summing the ledger" in drawn and "drawing the charts" in drawn and "reading the ledger" in drawn
    capsys.readouterr()
    assert main(argv) == 0  # stderr is not a terminal here: nothing but the result
    captured = capsys.readouterr()
    assert captured.err == "" and "summing" not in captured.out


def test_without_matplotlib_the_demo_says_how_to_get_the_html_report(tmp_path: Path) -> None:
    # matplotlib made unimportable, as on a core-only install
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from pathlib import Path\n"
            "from greenroute.demo import run_demo\n"
            "from greenroute.cli import main\n"
            f"run_demo(Path({str(tmp_path / 'demo')!r}), files=5)\n"
            f"sys.exit(main(['report', '--config', {str(tmp_path / 'demo' / 'greenroute.toml')!r}, "
            f"'--html', {str(tmp_path / 'r.html')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2, done.stderr  # the report itself: a clear error, not a traceback
    assert "pip install 'greenroute[report]'" in done.stdout  # the demo finished and said how
    assert "greenroute[report]" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "demo" / "greenroute.toml").is_file() and not (tmp_path / "demo" / "report.html").exists()
    assert f"baseline = \"{DEMO_BASELINE}\"" in (tmp_path / "demo" / "greenroute.toml").read_text()
