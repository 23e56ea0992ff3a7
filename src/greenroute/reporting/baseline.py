"""The ledger's counterfactual: what a write would have emitted on the baseline backend.

It is decided with the write, so it uses what the decision knew: the same carbon model and a grid
value of the same signal kind. The baseline's value is the decision's own when the baseline was a
candidate, else the grid signals' current value for its region (their caches answer in
microseconds; a miss waits at most the signals' time budget, as any decision does). A marginal
number is never compared with an average one: when the baseline's region only has the other kind,
there is no baseline, and the note says why.
"""

from __future__ import annotations

from typing import NamedTuple

from ..carbon import HOURS_PER_MONTH, CarbonModel
from ..model import Backend, CarbonPlacementDecision
from ..signals import GridSignals

__all__ = ["Baseline", "baseline_for"]


class Baseline(NamedTuple):
    """The baseline of one write (the ledger columns ``baseline_*``).

    Attributes:
        backend_id: The baseline backend, if one is configured.
        write_gco2e: What the write would have emitted there; ``None`` when not comparable.
        gco2e_month: What keeping it there would emit per month (730 h); ``None`` when not comparable.
        note: Why there is no baseline figure, when there is none.
    """

    backend_id: str | None
    write_gco2e: float | None
    gco2e_month: float | None
    note: str | None


def baseline_for(decision: CarbonPlacementDecision, size: int, *, backend: Backend | None, signals: GridSignals,
                 model: CarbonModel) -> Baseline:
    """The write of ``size`` bytes that ``decision`` placed, priced on ``backend`` instead.

    Args:
        decision: The placement decision of the write.
        size: The bytes actually written.
        backend: The baseline backend (``None``: none configured).
        signals: Where to ask for the baseline region's grid value when the decision has none.
        model: The carbon model that priced the write.

    Example:
        >>> from greenroute.placement import GreenPlacementService
        >>> from greenroute.profiles import default_backends
        >>> service = GreenPlacementService(default_backends())
        >>> decision = service.select_greenest_backend(None, 10**9)
        >>> b = baseline_for(decision, 10**9, backend=service.backend("aws-us-west-2"),
        ...                  signals=service.signals, model=service.carbon_model)
        >>> b.backend_id, b.write_gco2e is not None and b.write_gco2e > decision.write_gco2e
        ('aws-us-west-2', True)
    """
    if backend is None:
        return Baseline(None, None, None, "no baseline backend is configured")
    grid = decision.grid_data.get(backend.id)
    if grid is None:
        resolution = signals.resolve([backend])
        grid = resolution.values.get(backend.id)
        if grid is None:
            why = resolution.missing.get(backend.id, "no source answered")
            return Baseline(backend.id, None, None, f"no grid value for {backend.region}: {why}")
    if grid.signal is not decision.signal:
        return Baseline(backend.id, None, None,
                        f"only a {grid.signal.value} value ({grid.source.value}) for {backend.region}, and the write "
                        f"used a {decision.signal.value} one: marginal and average figures are never compared")
    intensity = grid.carbon_intensity_g_per_kwh
    # The same calls the write's own estimate makes, so a write placed on the baseline saves exactly 0.
    write = model.write_gco2e(size, pue=backend.pue, carbon_intensity_g_per_kwh=intensity)
    month = model.at_rest_gco2e(size, hours=HOURS_PER_MONTH, provider=backend.provider, pue=backend.pue,
                                carbon_intensity_g_per_kwh=intensity)
    return Baseline(backend.id, write, month, None)
