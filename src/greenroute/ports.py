"""The ports: small protocols that adapters implement and the core depends on.

The core never imports an adapter; configuration picks adapters by name and hands them in.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .model import GridCarbonData, SignalKind

__all__ = ["GridSource"]


@runtime_checkable
class GridSource(Protocol):
    """Something that can tell the grid carbon intensity of a region.

    Implementations: :class:`greenroute.EmbeddedGridSource` and :class:`greenroute.ManualGridSource`
    in the core, and the live API clients in ``greenroute.adapters``.

    Attributes:
        name: Stable short name, as used in ``placement.sources`` (``"watttime"``).
        signal: The one signal kind this source answers with.
    """

    name: str
    signal: SignalKind

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
        """The current value for ``region``.

        Args:
            region: A cloud region (``us-west-2``) or an operator-chosen name.
            zone: The source's own zone code to use instead of the region's mapped one
                (an Electricity Maps zone for average sources, a WattTime region for marginal ones).

        Raises:
            greenroute.errors.GridDataError: The source cannot give a value; the subclass says why.
            greenroute.errors.UnknownRegionError: The source does not know the region.
        """
        ...

    def is_available(self) -> bool:
        """Whether the source is configured to answer at all (for example has credentials)."""
        ...
