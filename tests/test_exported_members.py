"""The public surface of ``greenroute`` is pinned, so it cannot drift by accident."""

from __future__ import annotations

import greenroute


def test_all_is_sorted_and_complete() -> None:
    exported = greenroute.__all__
    assert exported == sorted(exported)
    for name in exported:
        assert hasattr(greenroute, name), name
    public = {n for n in dir(greenroute) if not n.startswith("_")}
    modules = {"carbon", "cli", "config", "embedded", "errors", "events", "model", "placement", "ports",
               "profiles", "scoring", "signals", "data", "adapters", "health", "router", "demo", "streams",
               "plugins", "rebalance", "reporting", "catalog_migrate"}
    assert public - modules - set(exported) == set()


def test_pinned_surface() -> None:
    assert set(greenroute.__all__) == {
        "Alternative", "AuditLogSink", "Backend", "BackendGreenScoreRegistry", "CarbonEstimate", "CarbonModel",
        "CarbonPlacementDecision", "ConfigError", "EmbeddedGridSource", "EventBus", "GreenPlacementService",
        "GreenScore", "GreenrouteConfig", "GreenrouteError", "GridAccessDeniedError", "GridCarbonData",
        "GridDataError", "GridDataSource", "GridDataUnavailableError", "GridResolution", "GridSignals",
        "GridSource", "GridUnitsError", "ManualGridSource", "NoEligibleBackendError", "Objective",
        "PlacementError", "PlacementPolicy", "Provider", "ScoreWeights", "SignalKind", "UnknownRegionError",
        "__version__", "boto3_client", "green_score", "load_config", "AllBackendsFailedError", "InvalidPathError",
        "MetadataNotSupportedError", "StorageError", "TargetUnavailableError", "ObjectInfo", "StorageTarget",
        "Catalog", "GreenRouter", "WriteResult", "CatalogEntry", "CatalogError", "CatalogUnavailableError",
        "ConcurrentWriteError", "InvalidMetadataError",
    }


def test_core_imports_no_adapter_or_cloud_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, greenroute, greenroute.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'httpx', 'boto3', 'botocore', 's3fs', 'gcsfs', 'adlfs', 'azure', 'google', 'fsspec'}"
        " or m.startswith('greenroute.adapters.')]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_doctests_pass() -> None:
    import doctest
    import importlib

    failures = 0
    for name in ("carbon", "cli", "config", "embedded", "events", "placement", "scoring", "signals"):
        module = importlib.import_module(f"greenroute.{name}")
        result = doctest.testmod(module)
        assert result.attempted > 0 or name in {"config"}, f"{name} has no examples"
        failures += result.failed
    result = doctest.testmod(greenroute)
    failures += result.failed
    assert failures == 0
