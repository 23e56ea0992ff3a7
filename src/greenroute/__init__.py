"""greenroute: carbon-aware placement for object storage.

Before each write, greenroute asks which configured storage backend is greenest right now, from
live or embedded grid carbon data, and says what the write is estimated to emit.

Example:
    >>> import greenroute
    >>> service = greenroute.load_config(None).build_service()
    >>> decision = service.select_greenest_backend(None, 10_000_000)
    >>> decision.signal.value, decision.backend_id
    ('average', 'aws-eu-north-1')
"""

from .carbon import CarbonEstimate, CarbonModel
from .config import GreenrouteConfig, load_config
from .embedded import EmbeddedGridSource
from .errors import (
    AllBackendsFailedError,
    ConfigError,
    GreenrouteError,
    GridAccessDeniedError,
    GridDataError,
    GridDataUnavailableError,
    GridUnitsError,
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


def boto3_client(config: str | None = None, **kwargs: object) -> object:
    """A drop-in for ``boto3.client("s3")`` whose writes are carbon-aware.

    ``Bucket`` becomes a logical namespace: objects are placed on the greenest eligible backend
    and found again through the catalog. Needs the ``s3`` extra (boto3).

    Args:
        config: The greenroute config file (default: ``$GREENROUTE_CONFIG``, then ``./greenroute.toml``).
        **kwargs: Passed to :class:`greenroute.adapters.boto3.client.GreenS3Client`.
    """
    import importlib

    module = importlib.import_module("greenroute.adapters.boto3.client")
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
