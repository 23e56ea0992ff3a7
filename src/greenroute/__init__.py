"""greenroute: carbon-aware placement for object storage.

Before each write, greenroute asks which configured storage backend is greenest right now, from
live or embedded grid carbon data, and says what the write is estimated to emit.

``import greenroute`` loads nothing but this file: each exported name (and each submodule, as
``greenroute.router``) is imported on first access (PEP 562), so a script that uses only the
placement service never pays for the router, and one that only asks ``greenroute.__version__``
pays for nothing.

Example:
    >>> import greenroute
    >>> service = greenroute.load_config(None).build_service()
    >>> decision = service.select_greenest_backend(None, 10_000_000)
    >>> decision.signal.value, decision.backend_id
    ('average', 'aws-eu-north-1')
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first access
    from .carbon import CarbonEstimate, CarbonModel
    from .config import GreenrouteConfig, load_config
    from .embedded import EmbeddedGridSource
    from .errors import (
        AllBackendsFailedError,
        CatalogError,
        CatalogUnavailableError,
        ConcurrentWriteError,
        ConfigError,
        GreenrouteError,
        GridAccessDeniedError,
        GridDataError,
        GridDataUnavailableError,
        GridUnitsError,
        InvalidMetadataError,
        InvalidPathError,
        MetadataNotSupportedError,
        NoEligibleBackendError,
        PlacementError,
        StorageError,
        TargetUnavailableError,
        UnknownRegionError,
    )
    from .events import AuditLogSink, EventBus
    from .model import (
        Alternative,
        Backend,
        CarbonPlacementDecision,
        CatalogEntry,
        GreenScore,
        GridCarbonData,
        GridDataSource,
        Objective,
        Provider,
        SignalKind,
    )
    from .placement import GreenPlacementService, PlacementPolicy
    from .ports import Catalog, GridSource, ObjectInfo, StorageTarget
    from .router import GreenRouter, WriteResult
    from .scoring import BackendGreenScoreRegistry, ScoreWeights, green_score
    from .signals import GridResolution, GridSignals, ManualGridSource

__version__ = "0.1.0"

#: Where each exported name lives (the submodule it is imported from on first access).
_EXPORTS = {
    "AllBackendsFailedError": "errors",
    "Alternative": "model",
    "AuditLogSink": "events",
    "Backend": "model",
    "BackendGreenScoreRegistry": "scoring",
    "CarbonEstimate": "carbon",
    "CarbonModel": "carbon",
    "CarbonPlacementDecision": "model",
    "Catalog": "ports",
    "CatalogEntry": "model",
    "CatalogError": "errors",
    "CatalogUnavailableError": "errors",
    "ConcurrentWriteError": "errors",
    "ConfigError": "errors",
    "EmbeddedGridSource": "embedded",
    "EventBus": "events",
    "GreenPlacementService": "placement",
    "GreenRouter": "router",
    "GreenScore": "model",
    "GreenrouteConfig": "config",
    "GreenrouteError": "errors",
    "GridAccessDeniedError": "errors",
    "GridCarbonData": "model",
    "GridDataError": "errors",
    "GridDataSource": "model",
    "GridDataUnavailableError": "errors",
    "GridResolution": "signals",
    "GridSignals": "signals",
    "GridSource": "ports",
    "GridUnitsError": "errors",
    "InvalidMetadataError": "errors",
    "InvalidPathError": "errors",
    "ManualGridSource": "signals",
    "MetadataNotSupportedError": "errors",
    "NoEligibleBackendError": "errors",
    "ObjectInfo": "ports",
    "Objective": "model",
    "PlacementError": "errors",
    "PlacementPolicy": "placement",
    "Provider": "model",
    "ScoreWeights": "scoring",
    "SignalKind": "model",
    "StorageError": "errors",
    "StorageTarget": "ports",
    "TargetUnavailableError": "errors",
    "UnknownRegionError": "errors",
    "WriteResult": "router",
    "green_score": "scoring",
    "load_config": "config",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # later lookups are plain module attributes
        return value
    if not name.startswith("__"):  # a submodule, as `greenroute.router`, imported on first access
        try:
            return _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *(k for k in globals() if not k.startswith("_") or k == "__version__")})


def boto3_client(config: str | None = None, **kwargs: object) -> object:
    """A drop-in for ``boto3.client("s3")`` whose writes are carbon-aware.

    ``Bucket`` becomes a logical namespace: objects are placed on the greenest eligible backend
    and found again through the catalog. Needs the ``s3`` extra (boto3).

    Args:
        config: The greenroute config file (default: ``$GREENROUTE_CONFIG``, then ``./greenroute.toml``).
        **kwargs: Passed to :class:`greenroute.adapters.boto3.client.GreenS3Client`.
    """
    module = _importlib.import_module("greenroute.adapters.boto3.client")
    return module.GreenS3Client.from_config(config, **kwargs)

__all__ = [
    "AllBackendsFailedError",
    "Alternative",
    "AuditLogSink",
    "Backend",
    "BackendGreenScoreRegistry",
    "CarbonEstimate",
    "CarbonModel",
    "CarbonPlacementDecision",
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "CatalogUnavailableError",
    "ConcurrentWriteError",
    "ConfigError",
    "EmbeddedGridSource",
    "EventBus",
    "GreenPlacementService",
    "GreenRouter",
    "GreenScore",
    "GreenrouteConfig",
    "GreenrouteError",
    "GridAccessDeniedError",
    "GridCarbonData",
    "GridDataError",
    "GridDataSource",
    "GridDataUnavailableError",
    "GridResolution",
    "GridSignals",
    "GridSource",
    "GridUnitsError",
    "InvalidMetadataError",
    "InvalidPathError",
    "ManualGridSource",
    "MetadataNotSupportedError",
    "NoEligibleBackendError",
    "ObjectInfo",
    "Objective",
    "PlacementError",
    "PlacementPolicy",
    "Provider",
    "ScoreWeights",
    "SignalKind",
    "StorageError",
    "StorageTarget",
    "TargetUnavailableError",
    "UnknownRegionError",
    "WriteResult",
    "__version__",
    "boto3_client",
    "green_score",
    "load_config",
]
