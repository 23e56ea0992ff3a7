"""The HTML report opens in headless Chromium, offline: charts painted, no console message, no request.

Chromium (Debian's ``chromium``, installed by ``make servers``) runs three times on a throwaway
profile: a screenshot of the report (kept as ``build/test-artifacts/report.png``), its DOM after
loading, and a control page that does make a request and log an error, which proves the two
detectors below can fail:

* requests: Chromium's own NetLog (``--log-net-log``) lists every URL request with its initiator; the
  browser's background traffic (update checks, network time) has none, a page's has the page's
  ``file://`` site in its network isolation key;
* console: with ``--enable-logging=stderr`` every console message, CSP violation and uncaught error
  of the page is a ``CONSOLE`` line on stderr.
"""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from tests.servers.fixtures import require_integration

from greenroute.reporting.html import write_html
from greenroute.reporting.ledger import ReportRequest
from greenroute.router import GreenRouter

from .conftest import T0, FrozenClock
from .test_ledger_arithmetic import scenario

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
CHART_COLORS = ((0x1B, 0x9E, 0x77), (0xD9, 0x5F, 0x02), (0x75, 0x70, 0xB3))  # the first series' colours


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "headless Chromium is not installed (make servers installs Debian's chromium)"
    if require_integration():
        pytest.fail(reason + " (GREENROUTE_REQUIRE_INTEGRATION=1)")
    print(reason)
    pytest.skip(reason)


def run_chromium(page: Path, work: Path, *extra: str) -> tuple[str, str, list[dict[str, str]]]:
    """Open ``page`` once; returns stdout, stderr and the NetLog's URL requests."""
    work.mkdir(parents=True, exist_ok=True)
    netlog = work / "netlog.json"
    argv = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-sync", f"--user-data-dir={work / 'profile'}",
            f"--log-net-log={netlog}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *extra,
            page.resolve().as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr, _requests(netlog)


def _requests(netlog: Path) -> list[dict[str, str]]:
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})]


def page_requests(requests: Sequence[dict[str, str]]) -> list[str]:
    """The requests the page made (the browser's own background requests have no initiator)."""
    return [r["url"] for r in requests
            if r.get("initiator") != "not an origin" or "file://" in str(r.get("network_isolation_key", ""))]


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class _Svgs(html.parser.HTMLParser):
    """Counts the <svg> elements and the drawn shapes and text inside each."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: list[dict[str, int]] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            if self.depth == 0:
                self.svgs.append({"path": 0, "text": 0})
            self.depth += 1
        elif self.depth and tag in ("path", "text"):
            self.svgs[-1][tag] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.depth -= 1


@pytest.fixture
def report_html(tmp_path: Path, router: GreenRouter, clock: FrozenClock) -> Path:
    scenario(router, clock)
    request = ReportRequest(until=T0 + timedelta(hours=10), market_factors={"green-north": 5.0})
    return write_html(router.catalog, request, tmp_path / "report.html")[0]


def test_the_html_is_self_contained(report_html: Path) -> None:
    text = report_html.read_text()
    assert "<script" not in text and "<link" not in text and "@import" not in text
    # no reference to anything outside the file (XML namespaces are names, never fetched)
    refs = re.findall(r"""(?:src|href|xlink:href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""", text)
    assert [r for pair in refs for r in pair if r and not r.startswith(("#", "data:"))] == []
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    for label in ("gCO2e", "signal: average", "sources: manual", "location-based", "Methods", "market-based"):
        assert label in text


def test_the_report_opens_in_headless_chromium_with_charts_and_no_network(report_html: Path,
                                                                          tmp_path: Path) -> None:
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    _, stderr, requests = run_chromium(report_html, tmp_path / "shot", "--window-size=1200,3400",
                                       f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert console_lines(stderr) == []
    assert page_requests(requests) == []

    dom, stderr, requests = run_chromium(report_html, tmp_path / "dom", "--dump-dom")
    svgs = _Svgs()
    svgs.feed(dom)
    assert len(svgs.svgs) == 4, svgs.svgs  # the four charts, as the browser parsed them
    assert all(s["path"] >= 5 and s["text"] >= 3 for s in svgs.svgs), svgs.svgs
    assert dom.count("<figure") == 4 and "Totals by backend" in dom
    assert console_lines(stderr) == [] and page_requests(requests) == []

    # painted: the series colours are on the screen, in quantity
    image = Image.open(shot).convert("RGB")
    counts = dict.fromkeys(CHART_COLORS, 0)
    for color, n in [(c, n) for n, c in (image.getcolors(maxcolors=1 << 20) or [])]:
        for want in CHART_COLORS:
            if all(abs(a - b) <= 8 for a, b in zip(color, want, strict=True)):
                counts[want] += n
    assert all(n > 500 for n in counts.values()), counts


def test_the_detectors_see_a_page_that_fetches_and_fails(tmp_path: Path) -> None:
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><img src="http://greenroute-test.invalid/x.png">'
                       '<script>console.error("control-error"); missingFunction();</script></body></html>')
    _, stderr, requests = run_chromium(control, tmp_path / "control", "--dump-dom")
    assert page_requests(requests) == ["http://greenroute-test.invalid/x.png"]
    lines = console_lines(stderr)
    assert any("control-error" in line for line in lines) and any("missingFunction" in line for line in lines)
