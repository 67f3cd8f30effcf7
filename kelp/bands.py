"""Band names, their default order in a Kelp Wanted tile, and the missing-data value."""

from collections.abc import Sequence
from typing import Final, Literal

from kelp.errors import ConfigError

__all__ = ["BAND_NAMES", "DEFAULT_BAND_ORDER", "MISSING", "BandName", "check_band_order"]

BandName = Literal["swir", "nir", "red", "green", "blue", "qa", "dem"]

#: Canonical order used everywhere inside the package, whatever the file's order.
BAND_NAMES: Final[tuple[BandName, ...]] = ("swir", "nir", "red", "green", "blue", "qa", "dem")

#: Band order of the Kelp Wanted GeoTIFFs: SWIR1, NIR, Red, Green, Blue, QA (cloud), DEM.
DEFAULT_BAND_ORDER: Final[tuple[BandName, ...]] = BAND_NAMES

#: Missing data in ANY band of a Kelp Wanted tile (Landsat 7 SLC-off stripes, DEM gaps).
MISSING: Final[int] = -32768


def check_band_order(band_order: Sequence[str]) -> tuple[BandName, ...]:
    """Validate a file band order: each canonical band name exactly once.

    Args:
        band_order: names of the file's bands, first band first, e.g.
            ``("swir", "nir", "red", "green", "blue", "qa", "dem")``.

    Returns:
        The order as a tuple of lower-case band names.

    Raises:
        ConfigError: if a name is unknown, repeated or missing.
    """
    names = tuple(name.strip().lower() for name in band_order)
    unknown = sorted(set(names) - set(BAND_NAMES))
    missing = [name for name in BAND_NAMES if name not in names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if unknown or missing or repeated:
        parts = []
        if unknown:
            parts.append(f"unknown {unknown}")
        if missing:
            parts.append(f"missing {missing}")
        if repeated:
            parts.append(f"repeated {repeated}")
        raise ConfigError(
            f"band order {list(band_order)} is invalid ({'; '.join(parts)}): give each of "
            f"{list(BAND_NAMES)} exactly once, in the order of the file's bands."
        )
    return names  # type: ignore[return-value]
