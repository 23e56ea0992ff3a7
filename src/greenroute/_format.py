"""Numbers as the ``greenroute`` command prints them: one unit per table, significant figures.

Estimates span nine orders of magnitude (a 1 kB write is about 20 ngCO2e, a TB kept a year is
kilograms), so a fixed unit with fixed decimals prints small amounts as ``0.0000``. Each table picks
the one unit in which its largest value is at least 1, and every value keeps three significant
figures, so nothing non-zero prints as zero and no value needs an exponent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["mass_unit", "sig"]

#: (label, grams per unit), largest first.
MASS_UNITS: tuple[tuple[str, float], ...] = (
    ("kgCO2e", 1e3), ("gCO2e", 1.0), ("mgCO2e", 1e-3), ("µgCO2e", 1e-6), ("ngCO2e", 1e-9),
)


def mass_unit(grams: Iterable[float]) -> tuple[str, float]:
    """The unit for a table of gCO2e values: the largest in which the largest value is at least 1.

    Returns:
        The label and the grams per unit; divide each value by the latter.

    Example:
        >>> mass_unit([0.000231, 0.0000011])
        ('µgCO2e', 1e-06)
    """
    biggest = max((abs(g) for g in grams if math.isfinite(g)), default=0.0)
    if biggest == 0.0:
        return "gCO2e", 1.0
    for label, scale in MASS_UNITS:
        if biggest >= scale:
            return label, scale
    return MASS_UNITS[-1]


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant figures, in plain notation; never rounded to zero.

    Example:
        >>> sig(0.0001234), sig(12.345), sig(98765.4), sig(0.0)
        ('0.000123', '12.3', '98800', '0')
    """
    if value == 0.0 or not math.isfinite(value):
        return f"{value:g}"
    rounded = float(f"{value:.{digits - 1}e}")  # 9.996 -> 10.0, so the decimals count from 10
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"
