"""The green score and the registry that keeps every backend's current score.

The score is the seed's formula, with configurable weights (defaults shown)::

    score = renewable_pct * 0.4
          + (1 - intensity / 1000) * 100 * 0.3
          + (2 - pue) * 100 * 0.2
          + ((2 - wue) * 100 * 0.1  if wue is known  else  5)

Higher is better; with typical inputs it lies between 0 and 100. At the edges it is deliberately
left unclamped so that it stays strictly monotone in every input: an intensity above
1000 g/kWh makes the carbon component negative, a PUE above 2.0 (or a WUE above 2.0 L/kWh) makes
its component negative. A missing WUE scores as if WUE were 1.5 (``wue_weight * 50`` points, 5 at
the default weight), so publishing a poor WUE is not punished against publishing none.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError, GridDataUnavailableError
from .model import GreenScore, utcnow

__all__ = ["BackendGreenScoreRegistry", "RegisteredBackend", "ScoreWeights", "green_score"]

_FORMAT = "greenroute.registry"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class ScoreWeights:
    """Weights of the green score's four components. Defaults are the seed's."""

    renewable: float = 0.4
    carbon: float = 0.3
    pue: float = 0.2
    wue: float = 0.1

    def to_dict(self) -> dict[str, float]:
        """A JSON-ready dict."""
        return {"renewable": self.renewable, "carbon": self.carbon, "pue": self.pue, "wue": self.wue}


def green_score(backend_id: str, region: str, *, carbon_intensity_g_per_kwh: float,
                renewable_pct: float, pue: float, wue: float | None = None,
                weights: ScoreWeights = ScoreWeights(),
                updated_at: datetime | None = None) -> GreenScore:
    """Compute one backend's green score from its inputs.

    Example:
        >>> s = green_score("aws-us-west-2", "us-west-2", carbon_intensity_g_per_kwh=197,
        ...                 renewable_pct=100, pue=1.12)
        >>> round(s.score, 2)
        86.69
    """
    renewable = renewable_pct * weights.renewable
    carbon = (1.0 - carbon_intensity_g_per_kwh / 1000.0) * 100.0 * weights.carbon
    pue_part = (2.0 - pue) * 100.0 * weights.pue
    wue_part = (2.0 - wue) * 100.0 * weights.wue if wue is not None else 50.0 * weights.wue
    return GreenScore(
        backend_id=backend_id,
        region=region,
        score=renewable + carbon + pue_part + wue_part,
        renewable_component=renewable,
        carbon_component=carbon,
        pue_component=pue_part,
        wue_component=wue_part,
        carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
        renewable_pct=renewable_pct,
        pue=pue,
        wue=wue,
        updated_at=updated_at or utcnow(),
    )


@dataclass(slots=True)
class RegisteredBackend:
    """The registry's record of one backend's score inputs."""

    backend_id: str
    region: str
    renewable_pct: float
    pue: float
    wue: float | None = None
    carbon_intensity_g_per_kwh: float | None = None
    updated_at: datetime = field(default_factory=utcnow)


class BackendGreenScoreRegistry:
    """Every registered backend's score inputs and current green score. Thread-safe.

    Example:
        >>> registry = BackendGreenScoreRegistry()
        >>> registry.register_backend("aws-eu-north-1", "eu-north-1", renewable_pct=100, pue=1.10)
        >>> registry.update_carbon_intensity("eu-north-1", 21)
        1
        >>> registry.get_best_backend()
        'aws-eu-north-1'
    """

    def __init__(self, weights: ScoreWeights | None = None) -> None:
        self.weights = weights or ScoreWeights()
        self._lock = threading.RLock()
        self._backends: dict[str, RegisteredBackend] = {}

    def register_backend(self, backend_id: str, region: str, renewable_pct: float, pue: float,
                         wue: float | None = None, *,
                         carbon_intensity_g_per_kwh: float | None = None) -> None:
        """Register (or re-register) a backend's score inputs.

        Raises:
            ConfigError: An input is out of range.
        """
        _check_inputs(backend_id, renewable_pct, pue, wue)
        with self._lock:
            old = self._backends.get(backend_id)
            intensity = carbon_intensity_g_per_kwh
            if intensity is None and old is not None and old.region == region:
                intensity = old.carbon_intensity_g_per_kwh
            self._backends[backend_id] = RegisteredBackend(
                backend_id, region, float(renewable_pct), float(pue),
                None if wue is None else float(wue), intensity)

    def unregister_backend(self, backend_id: str) -> None:
        """Forget a backend. Unknown ids are ignored."""
        with self._lock:
            self._backends.pop(backend_id, None)

    def update_carbon_intensity(self, region: str, intensity: float) -> int:
        """Set the grid intensity of every backend in ``region``.

        Returns:
            How many backends were updated.
        """
        now = utcnow()
        with self._lock:
            hits = [b for b in self._backends.values() if b.region == region]
            for b in hits:
                b.carbon_intensity_g_per_kwh = float(intensity)
                b.updated_at = now
        return len(hits)

    def backend_ids(self) -> list[str]:
        """Registered backend ids, sorted."""
        with self._lock:
            return sorted(self._backends)

    def get_score(self, backend_id: str) -> GreenScore:
        """The backend's current score.

        Raises:
            KeyError: The backend is not registered.
            GridDataUnavailableError: No intensity is known yet for its region.
        """
        with self._lock:
            b = self._backends[backend_id]
            if b.carbon_intensity_g_per_kwh is None:
                raise GridDataUnavailableError(
                    f"no carbon intensity known for region {b.region} (backend {backend_id})",
                    region=b.region)
            return green_score(b.backend_id, b.region, carbon_intensity_g_per_kwh=b.carbon_intensity_g_per_kwh,
                               renewable_pct=b.renewable_pct, pue=b.pue, wue=b.wue,
                               weights=self.weights, updated_at=b.updated_at)

    def get_all_scores(self) -> list[GreenScore]:
        """Scores of every backend with a known intensity, best first (ties by backend id)."""
        with self._lock:
            ids = [k for k, b in self._backends.items() if b.carbon_intensity_g_per_kwh is not None]
            scores = [self.get_score(k) for k in ids]
        return sorted(scores, key=rank_key)

    def get_best_backend(self, candidates: Iterable[str] | None = None) -> str | None:
        """The best-scoring backend among ``candidates`` (all when ``None``), or ``None``.

        Candidates that are unregistered or have no intensity yet are skipped.
        """
        allowed = None if candidates is None else set(candidates)
        scores = [s for s in self.get_all_scores() if allowed is None or s.backend_id in allowed]
        return scores[0].backend_id if scores else None

    # -- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The registry as a JSON-ready dict (the persisted format)."""
        with self._lock:
            backends = [
                {
                    "backend_id": b.backend_id,
                    "region": b.region,
                    "renewable_pct": b.renewable_pct,
                    "pue": b.pue,
                    "wue": b.wue,
                    "carbon_intensity_g_per_kwh": b.carbon_intensity_g_per_kwh,
                    "updated_at": b.updated_at.isoformat(),
                }
                for b in sorted(self._backends.values(), key=lambda b: b.backend_id)
            ]
        return {"format": _FORMAT, "version": _VERSION, "weights": self.weights.to_dict(),
                "backends": backends}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the registry to ``path`` atomically (temp file in the same folder, then rename)."""
        import tempfile  # only saving needs it (and the shutil and random modules it loads)

        target = Path(path)
        payload = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BackendGreenScoreRegistry:
        """Read a registry written by :meth:`save`.

        Raises:
            ConfigError: The file is missing, not JSON, not a greenroute registry, or invalid.
                The file itself is never modified.
        """
        where = str(path)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("registry file does not exist", path=where) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"not a readable JSON registry ({exc})", path=where) from exc
        if not isinstance(raw, dict) or raw.get("format") != _FORMAT:
            raise ConfigError(f"not a greenroute registry (expected \"format\": \"{_FORMAT}\")", path=where)
        if raw.get("version") != _VERSION:
            raise ConfigError(f"unsupported registry version {raw.get('version')!r} "
                              f"(this greenroute reads version {_VERSION})", path=where)
        try:
            registry = cls(ScoreWeights(**{k: float(v) for k, v in raw.get("weights", {}).items()}))
            for i, b in enumerate(raw["backends"]):
                if not isinstance(b, dict):
                    raise ConfigError("expected an object", path=where, key=f"backends[{i}]")
                registry.register_backend(
                    str(b["backend_id"]), str(b["region"]), float(b["renewable_pct"]), float(b["pue"]),
                    None if b.get("wue") is None else float(b["wue"]),
                    carbon_intensity_g_per_kwh=(None if b.get("carbon_intensity_g_per_kwh") is None
                                                else float(b["carbon_intensity_g_per_kwh"])))
                if b.get("updated_at"):
                    registry._backends[str(b["backend_id"])].updated_at = datetime.fromisoformat(b["updated_at"])
        except ConfigError as exc:
            raise ConfigError(str(exc).removeprefix(f"{where}: "), path=where) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid registry entry ({type(exc).__name__}: {exc})", path=where) from exc
        return registry


def rank_key(score: GreenScore) -> tuple[float, str]:
    """Sort key: higher score first, then backend id, so rankings are deterministic."""
    return (-score.score, score.backend_id)


def _check_inputs(backend_id: str, renewable_pct: float, pue: float, wue: float | None) -> None:
    if not 0.0 <= renewable_pct <= 100.0:
        raise ConfigError(f"renewable_pct must be between 0 and 100, got {renewable_pct}", key=backend_id)
    if pue < 1.0:
        raise ConfigError(f"pue must be at least 1.0, got {pue}", key=backend_id)
    if wue is not None and wue < 0.0:
        raise ConfigError(f"wue must not be negative, got {wue}", key=backend_id)
