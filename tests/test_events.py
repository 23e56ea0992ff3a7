"""The event bus and the audit sink."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from greenroute import AuditLogSink, Backend, EventBus, GreenPlacementService, Provider
from greenroute.events import BACKEND_REGISTERED, PLACEMENT_DECISION
from greenroute.model import CarbonPlacementDecision
from greenroute.profiles import default_backends


def test_publish_reaches_subscribers_in_order_and_unsubscribe_works() -> None:
    bus = EventBus()
    seen: list[tuple[str, int]] = []
    bus.subscribe("t", lambda p: seen.append(("a", p)))
    stop = bus.subscribe("t", lambda p: seen.append(("b", p)))
    assert bus.publish("t", 1) == 2
    stop()
    assert bus.publish("t", 2) == 1
    assert bus.publish("other", 3) == 0
    assert seen == [("a", 1), ("b", 1), ("a", 2)]


def test_a_raising_subscriber_is_logged_and_never_breaks_a_placement(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    received: list[CarbonPlacementDecision] = []

    def broken(_: object) -> None:
        raise ValueError("subscriber bug")

    bus.subscribe(PLACEMENT_DECISION, broken)
    bus.subscribe(PLACEMENT_DECISION, received.append)
    service = GreenPlacementService(default_backends(), bus=bus)
    with caplog.at_level(logging.ERROR, logger="greenroute.events"):
        decision = service.select_greenest_backend(None, 100)
    assert received == [decision]
    assert any("subscriber bug" in (r.exc_text or "") or "subscriber" in r.getMessage() for r in caplog.records)


def test_backends_register_through_the_bus() -> None:
    bus = EventBus()
    service = GreenPlacementService(bus=bus)
    announced: list[Backend] = []
    bus.subscribe(BACKEND_REGISTERED, announced.append)
    lab = Backend(id="lab", provider=Provider.FILE, region="eu-north-1", root="file:///lab", pue=1.2,
                  renewable_pct=90)
    bus.publish(BACKEND_REGISTERED, lab)
    assert service.backends == [lab]
    assert service.registry.backend_ids() == ["lab"]
    assert announced == [lab]
    assert service.select_greenest_backend(None, 1).backend_id == "lab"


def test_audit_sink_appends_one_json_line_per_decision(tmp_path: Path) -> None:
    bus = EventBus()
    sink = AuditLogSink(tmp_path / "audit" / "decisions.jsonl")
    bus.subscribe(PLACEMENT_DECISION, sink)
    service = GreenPlacementService(default_backends(), bus=bus)
    decisions = [service.select_greenest_backend(None, n * 1000) for n in range(1, 4)]

    def more() -> None:
        for _ in range(20):
            service.select_greenest_backend(None, 1)

    threads = [threading.Thread(target=more) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "audit" / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == 3 + 80
    first = [json.loads(line) for line in lines[:3]]
    assert [d["decision_id"] for d in first] == [d.decision_id for d in decisions]
    assert first[1]["data_size_bytes"] == 2000
    assert first[0]["backend_id"] == "aws-eu-north-1"
    assert first[0]["grid_data"]["aws-eu-north-1"]["source"] == "embedded"
    assert all(json.loads(line)["signal"] == "average" for line in lines)
