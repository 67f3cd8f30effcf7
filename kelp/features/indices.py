"""Spectral indices of a Landsat tile: a registry of named, documented, NaN-aware formulas.

Every index is a :class:`SpectralIndex` in :data:`INDICES`, keyed by its canonical name;
:func:`get_index` finds one by name (any case) and :func:`compute_index` /
:func:`compute_indices` evaluate them on a tile's bands.

**Inputs are raw Landsat DNs**, not reflectance, as the Kelp Wanted winners computed them:
``(H, W)`` float32 arrays keyed ``swir``, ``nir``, ``red``, ``green``, ``blue`` (reflectance 0
is about DN 7273; open water is about 7,500-9,500). Convert the missing value
(:data:`kelp.bands.MISSING`, -32768) to NaN first; integer arrays are refused so that it
cannot slip into the arithmetic. Additive constants designed for reflectance in [0, 1] (the
0.5 of SAVI and WAVI, the 1 of EVI, the 0.1/0.02 of GVMI) are negligible next to DNs, so on
this scale SAVI is about 1.5 * NDVI and GVMI about NDMI; they are kept because the formulas
are the published ones. FAI is a zero-sum combination of bands, so the DN offset cancels.

Indices (``B``, ``G``, ``R``, ``NIR``, ``SWIR`` = blue, green, red, near and short-wave
infrared; each entry's ``formula`` and ``source`` say the same, the source sometimes in more
detail). The reference set, formulas exactly as the Kelp Wanted write-ups give them:

- ``NDVI`` = (NIR - R) / (NIR + R); Rouse et al. 1974
- ``NDWI`` = (G - NIR) / (G + NIR); McFeeters 1996
- ``MNDWI`` = (G - SWIR) / (G + SWIR); Xu 2006
- ``EVI`` = 2.5 * (NIR - R) / (NIR + 6 * R - 7.5 * B + 1); Huete et al. 2002
- ``EVI2`` = 2.4 * (NIR - R) / (NIR + R + 1); Index DataBase, after Jiang et al. 2008
- ``SABI`` = (NIR - R) / (G + B); Alawadi 2010
- ``KIVU`` = (B - R) / G; Kelp Wanted 2nd place (xultaeculcis), citing doi:10.1002/eap.1708
- ``CI`` = (R - B) / R; Coloration Index, Index DataBase
- ``ClGreen`` = NIR / G - 1; Gitelson et al. 2003
- ``MVI`` = NIR / SWIR; Mid-infrared Vegetation Index, Index DataBase
- ``AVI`` = 2 * NIR - R; Ashburn 1978
- ``GBNDVI`` = (NIR - (G + B)) / (NIR + G + B); Wang et al. 2007
- ``PNDVI`` = (NIR - (R + G + B)) / (NIR + R + G + B); Wang et al. 2007
- ``GVMI`` = ((NIR + 0.1) - (SWIR + 0.02)) / ((NIR + 0.1) + (SWIR + 0.02)); Ceccato et al. 2002
- ``NormNIR`` = NIR / (NIR + R + G); Index DataBase
- ``WDRVI`` = (0.1 * NIR - R) / (0.1 * NIR + R); Gitelson 2004
- ``NDAVI`` = (NIR - B) / (NIR + B); Villa et al. 2014
- ``WAVI`` = 1.5 * (NIR - B) / (NIR + B + 0.5); Villa et al. 2014
- ``ATSAVI`` = 1.22 * (NIR - 1.22 * R - 0.03) / (1.22 * NIR + R - 1.22 * 0.03
  + 0.08 * (1 + 1.22^2)); Baret & Guyot 1991
- ``CDOM`` = 537 * exp(-2.93 * G / R); Sentinel Hub custom script se2waq
- ``DOC`` = 432 * exp(-2.24 * G / R); Sentinel Hub custom script se2waq
- ``WATERCOLOR`` = 25366 * exp(-4.53 * G / R); Sentinel Hub custom script se2waq
- ``Kab1`` = 1.67 - 3.94 * ln(B) + 3.78 * ln(G); Kabbara et al. 2008
- ``MCARI`` = ((NIR - R) - 0.2 * (NIR - G)) * (NIR / R); broad-band form of Daughtry et al. 2000
- ``mCRIG`` = (1 / B - 1 / G) * NIR; green form of Gitelson et al. 2006 (Index DataBase)
- ``IPVI`` = NIR / (NIR + R); Crippen 1990 (in the 2nd-place set)

Added for kelp and water:

- ``FAI`` = NIR - (R + (SWIR - R) * (865 - 655) / (1610 - 655)); Hu 2009, Landsat 8 OLI
  centre wavelengths (nm); floating algae stand out from the red-SWIR baseline
- ``NDMI`` = (NIR - SWIR) / (NIR + SWIR); Gao 1996 (his "NDWI", also called NDWI2)
- ``SAVI`` = 1.5 * (NIR - R) / (NIR + R + 0.5); Huete 1988
- ``GNDVI`` = (NIR - G) / (NIR + G); Gitelson et al. 1996
- ``SR`` = NIR / R; Jordan 1969
- ``GRVI`` = (G - R) / (G + R); Tucker 1979

**Fill policy.** NaN in an input band means missing data. An index is NaN exactly where any
band *it uses* is NaN, and finite everywhere else; bands it does not use do not matter.
Arithmetic never creates NaN or inf:

1. a denominator whose magnitude is below :data:`EPS` (``1e-6``) is replaced by ``+EPS`` or
   ``-EPS`` with its sign (zero counts as positive). Inputs are DNs, whole numbers up to
   65,535, so every denominator that is not exactly zero has magnitude at least 0.0025
   (ATSAVI's worst case; 0.1 or more for the others) and is never altered, while
   ``numerator / EPS`` (at most ~1e11 for DN inputs) stays far inside float32;
2. a logarithm's argument below ``EPS`` is clamped to ``EPS`` (``ln(EPS)`` is about -13.8);
3. an exponent is clipped above at ``50``, so ``25366 * exp(50)`` (about 1.3e26) is finite;
4. whatever is still non-finite where the inputs were valid, only possible when float32
   overflows on extreme inputs (|x| near 1e38, or inf given as input), is replaced: +inf by
   the largest float32 (about 3.4e38), -inf by its negative, NaN (inf - inf, inf / inf) by 0.

Outputs are float32; the computation stays in float32 (no float64 temporaries) and raises
no floating-point warnings.
"""

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from kelp.registry import Registry

__all__ = [
    "EPS",
    "INDICES",
    "SpectralIndex",
    "available_indices",
    "compute_index",
    "compute_indices",
    "get_index",
]

_F32 = npt.NDArray[np.float32]
_Array = npt.NDArray[np.floating[Any]]

#: Smallest denominator magnitude and smallest log argument; see the fill policy.
EPS: Final[float] = 1e-6

_EXP_MAX: Final[float] = 50.0
_F32_MAX: Final[float] = float(np.finfo(np.float32).max)
_SPECTRAL_BANDS: Final[tuple[str, ...]] = ("swir", "nir", "red", "green", "blue")
_INDEX_DATABASE: Final[str] = "Index DataBase (indexdatabase.de)"
_SE2WAQ: Final[str] = (
    "Sentinel Hub custom script se2waq (Sentinel-2 water quality), "
    "via Kelp Wanted 2nd place (xultaeculcis)"
)


@dataclass(frozen=True)
class SpectralIndex:
    """One spectral index: its formula, where it comes from and how to compute it.

    Attributes:
        name: canonical name, e.g. ``"NDVI"``, ``"ClGreen"``, ``"mCRIG"``.
        long_name: what the abbreviation stands for.
        formula: the formula on raw bands, in plain ASCII (``B``, ``G``, ``R``, ``NIR``,
            ``SWIR``).
        source: the paper or index collection it comes from.
        bands: the bands it uses, lower-case, e.g. ``("nir", "red")``.
        fn: the raw formula; takes the bands as keyword arguments named as in ``bands``.
            Call :meth:`compute` instead, which applies the module's fill policy.
    """

    name: str
    long_name: str
    formula: str
    source: str
    bands: tuple[str, ...]
    fn: Callable[..., _Array]

    def compute(self, bands: Mapping[str, npt.ArrayLike]) -> _F32:
        """Evaluate the index with the module's fill policy.

        Args:
            bands: arrays of one shape (typically ``(H, W)``), keyed by lower-case band name;
                floating point, raw DNs, NaN where missing. Only :attr:`bands` are needed;
                other keys are ignored.

        Returns:
            The index, float32, the shape of the bands.

        Raises:
            ValueError: if a band the index needs is missing, not floating point, or of a
                different shape from the others.
        """
        arrays = _prepare_bands(bands, [self])
        return _evaluate(self, arrays, {})


_REGISTRY: Registry[SpectralIndex] = Registry("spectral index", case_sensitive=False)


def _index(
    name: str, long_name: str, formula: str, source: str
) -> Callable[[Callable[..., _Array]], Callable[..., _Array]]:
    """Decorator registering a raw formula; its parameter names are the bands it uses."""

    def register(fn: Callable[..., _Array]) -> Callable[..., _Array]:
        bands = tuple(inspect.signature(fn).parameters)
        unknown = [band for band in bands if band not in _SPECTRAL_BANDS]
        if unknown:
            raise ValueError(f"index {name!r}: unknown bands {unknown}")
        _REGISTRY.register(name, SpectralIndex(name, long_name, formula, source, bands, fn))
        return fn

    return register


def _div(numerator: _Array | float, denominator: _Array) -> _Array:
    """``numerator / denominator`` with ``|denominator| < EPS`` replaced by ``±EPS``."""
    small = np.abs(denominator) < EPS
    if small.any():
        denominator = np.array(denominator, dtype=np.float32)
        denominator[small] = np.where(denominator[small] < 0, np.float32(-EPS), np.float32(EPS))
    return numerator / denominator


def _log(x: _Array) -> _Array:
    """Natural log with arguments below ``EPS`` clamped to ``EPS``."""
    return np.log(np.maximum(x, np.float32(EPS)))


def _exp(x: _Array) -> _Array:
    """``exp`` with the exponent clipped above at ``_EXP_MAX`` to stay finite."""
    return np.exp(np.minimum(x, np.float32(_EXP_MAX)))


# The reference set, in the order of the Kelp Wanted write-ups' list.


@_index(
    "NDVI", "Normalized Difference Vegetation Index", "(NIR - R) / (NIR + R)", "Rouse et al. 1974"
)
def _ndvi(nir: _Array, red: _Array) -> _Array:
    return _div(nir - red, nir + red)


@_index(
    "NDWI",
    "Normalized Difference Water Index (McFeeters)",
    "(G - NIR) / (G + NIR)",
    "McFeeters 1996",
)
def _ndwi(nir: _Array, green: _Array) -> _Array:
    return _div(green - nir, green + nir)


@_index("MNDWI", "Modified Normalized Difference Water Index", "(G - SWIR) / (G + SWIR)", "Xu 2006")
def _mndwi(swir: _Array, green: _Array) -> _Array:
    return _div(green - swir, green + swir)


@_index(
    "EVI",
    "Enhanced Vegetation Index",
    "2.5 * (NIR - R) / (NIR + 6 * R - 7.5 * B + 1)",
    "Huete et al. 2002",
)
def _evi(nir: _Array, red: _Array, blue: _Array) -> _Array:
    return 2.5 * _div(nir - red, nir + 6.0 * red - 7.5 * blue + 1.0)


@_index(
    "EVI2",
    "Enhanced Vegetation Index 2 (two-band)",
    "2.4 * (NIR - R) / (NIR + R + 1)",
    f"{_INDEX_DATABASE}, after Jiang et al. 2008",
)
def _evi2(nir: _Array, red: _Array) -> _Array:
    return 2.4 * _div(nir - red, nir + red + 1.0)


@_index("SABI", "Surface Algal Bloom Index", "(NIR - R) / (G + B)", "Alawadi 2010")
def _sabi(nir: _Array, red: _Array, green: _Array, blue: _Array) -> _Array:
    return _div(nir - red, green + blue)


@_index(
    "KIVU",
    "KIVU index",
    "(B - R) / G",
    "Kelp Wanted 2nd place (xultaeculcis), citing doi:10.1002/eap.1708",
)
def _kivu(red: _Array, green: _Array, blue: _Array) -> _Array:
    return _div(blue - red, green)


@_index("CI", "Coloration Index", "(R - B) / R", _INDEX_DATABASE)
def _ci(red: _Array, blue: _Array) -> _Array:
    return _div(red - blue, red)


@_index("ClGreen", "Chlorophyll Index Green", "NIR / G - 1", "Gitelson et al. 2003")
def _clgreen(nir: _Array, green: _Array) -> _Array:
    return _div(nir, green) - 1.0


@_index("MVI", "Mid-infrared Vegetation Index", "NIR / SWIR", _INDEX_DATABASE)
def _mvi(swir: _Array, nir: _Array) -> _Array:
    return _div(nir, swir)


@_index("AVI", "Ashburn Vegetation Index", "2 * NIR - R", f"Ashburn 1978 ({_INDEX_DATABASE})")
def _avi(nir: _Array, red: _Array) -> _Array:
    return 2.0 * nir - red


@_index(
    "GBNDVI",
    "Green-Blue NDVI",
    "(NIR - (G + B)) / (NIR + G + B)",
    f"Wang et al. 2007 ({_INDEX_DATABASE})",
)
def _gbndvi(nir: _Array, green: _Array, blue: _Array) -> _Array:
    return _div(nir - (green + blue), nir + green + blue)


@_index(
    "PNDVI",
    "Pan NDVI",
    "(NIR - (R + G + B)) / (NIR + R + G + B)",
    f"Wang et al. 2007 ({_INDEX_DATABASE})",
)
def _pndvi(nir: _Array, red: _Array, green: _Array, blue: _Array) -> _Array:
    visible = red + green + blue
    return _div(nir - visible, nir + visible)


@_index(
    "GVMI",
    "Global Vegetation Moisture Index",
    "((NIR + 0.1) - (SWIR + 0.02)) / ((NIR + 0.1) + (SWIR + 0.02))",
    "Ceccato et al. 2002",
)
def _gvmi(swir: _Array, nir: _Array) -> _Array:
    a = nir + 0.1
    b = swir + 0.02
    return _div(a - b, a + b)


@_index("NormNIR", "Normalized NIR", "NIR / (NIR + R + G)", _INDEX_DATABASE)
def _normnir(nir: _Array, red: _Array, green: _Array) -> _Array:
    return _div(nir, nir + red + green)


@_index(
    "WDRVI",
    "Wide Dynamic Range Vegetation Index",
    "(0.1 * NIR - R) / (0.1 * NIR + R)",
    "Gitelson 2004",
)
def _wdrvi(nir: _Array, red: _Array) -> _Array:
    scaled = 0.1 * nir
    return _div(scaled - red, scaled + red)


@_index(
    "NDAVI",
    "Normalized Difference Aquatic Vegetation Index",
    "(NIR - B) / (NIR + B)",
    "Villa et al. 2014",
)
def _ndavi(nir: _Array, blue: _Array) -> _Array:
    return _div(nir - blue, nir + blue)


@_index(
    "WAVI",
    "Water Adjusted Vegetation Index",
    "1.5 * (NIR - B) / (NIR + B + 0.5)",
    "Villa et al. 2014",
)
def _wavi(nir: _Array, blue: _Array) -> _Array:
    return 1.5 * _div(nir - blue, nir + blue + 0.5)


@_index(
    "ATSAVI",
    "Adjusted Transformed Soil-Adjusted Vegetation Index",
    "1.22 * (NIR - 1.22 * R - 0.03) / (1.22 * NIR + R - 1.22 * 0.03 + 0.08 * (1 + 1.22^2))",
    "Baret & Guyot 1991",
)
def _atsavi(nir: _Array, red: _Array) -> _Array:
    offset = -1.22 * 0.03 + 0.08 * (1.0 + 1.22**2)
    return 1.22 * _div(nir - 1.22 * red - 0.03, 1.22 * nir + red + offset)


@_index("CDOM", "Coloured Dissolved Organic Matter", "537 * exp(-2.93 * G / R)", _SE2WAQ)
def _cdom(red: _Array, green: _Array) -> _Array:
    return 537.0 * _exp(-2.93 * _div(green, red))


@_index("DOC", "Dissolved Organic Carbon", "432 * exp(-2.24 * G / R)", _SE2WAQ)
def _doc(red: _Array, green: _Array) -> _Array:
    return 432.0 * _exp(-2.24 * _div(green, red))


@_index("WATERCOLOR", "Water colour", "25366 * exp(-4.53 * G / R)", _SE2WAQ)
def _watercolor(red: _Array, green: _Array) -> _Array:
    return 25366.0 * _exp(-4.53 * _div(green, red))


@_index(
    "Kab1",
    "Kabbara index 1 (chlorophyll-a)",
    "1.67 - 3.94 * ln(B) + 3.78 * ln(G)",
    "Kabbara et al. 2008, via Kelp Wanted 2nd place (xultaeculcis)",
)
def _kab1(green: _Array, blue: _Array) -> _Array:
    return 1.67 - 3.94 * _log(blue) + 3.78 * _log(green)


@_index(
    "MCARI",
    "Modified Chlorophyll Absorption in Reflectance Index",
    "((NIR - R) - 0.2 * (NIR - G)) * (NIR / R)",
    f"broad-band form of Daughtry et al. 2000 ({_INDEX_DATABASE})",
)
def _mcari(nir: _Array, red: _Array, green: _Array) -> _Array:
    return ((nir - red) - 0.2 * (nir - green)) * _div(nir, red)


@_index(
    "mCRIG",
    "Modified Carotenoid Reflectance Index, green",
    "(1 / B - 1 / G) * NIR",
    f"green form of Gitelson et al. 2006 ({_INDEX_DATABASE})",
)
def _mcrig(nir: _Array, green: _Array, blue: _Array) -> _Array:
    return (_div(1.0, blue) - _div(1.0, green)) * nir


@_index(
    "IPVI",
    "Infrared Percentage Vegetation Index",
    "NIR / (NIR + R)",
    "Crippen 1990; in the Kelp Wanted 2nd-place set (xultaeculcis)",
)
def _ipvi(nir: _Array, red: _Array) -> _Array:
    return _div(nir, nir + red)


# Added for kelp and water.

#: Landsat 8 OLI band centres (nm): red 655, NIR 865, SWIR1 1610.
_FAI_WEIGHT: Final[float] = (865.0 - 655.0) / (1610.0 - 655.0)


@_index(
    "FAI",
    "Floating Algae Index",
    "NIR - (R + (SWIR - R) * (865 - 655) / (1610 - 655))",
    "Hu 2009, with Landsat 8 OLI centre wavelengths",
)
def _fai(swir: _Array, nir: _Array, red: _Array) -> _Array:
    return nir - (red + (swir - red) * _FAI_WEIGHT)


@_index(
    "NDMI",
    "Normalized Difference Moisture Index (Gao's NDWI, NDWI2)",
    "(NIR - SWIR) / (NIR + SWIR)",
    "Gao 1996",
)
def _ndmi(swir: _Array, nir: _Array) -> _Array:
    return _div(nir - swir, nir + swir)


@_index("SAVI", "Soil Adjusted Vegetation Index", "1.5 * (NIR - R) / (NIR + R + 0.5)", "Huete 1988")
def _savi(nir: _Array, red: _Array) -> _Array:
    return 1.5 * _div(nir - red, nir + red + 0.5)


@_index(
    "GNDVI",
    "Green Normalized Difference Vegetation Index",
    "(NIR - G) / (NIR + G)",
    "Gitelson et al. 1996",
)
def _gndvi(nir: _Array, green: _Array) -> _Array:
    return _div(nir - green, nir + green)


@_index("SR", "Simple Ratio", "NIR / R", "Jordan 1969")
def _sr(nir: _Array, red: _Array) -> _Array:
    return _div(nir, red)


@_index("GRVI", "Green-Red Vegetation Index", "(G - R) / (G + R)", "Tucker 1979")
def _grvi(red: _Array, green: _Array) -> _Array:
    return _div(green - red, green + red)


#: Every registered index, keyed by canonical name, in documentation order.
INDICES: Final[Mapping[str, SpectralIndex]] = _REGISTRY.mapping()


def available_indices() -> list[str]:
    """Canonical names of all registered indices, in documentation order.

    Returns:
        The names, e.g. ``["NDVI", "NDWI", ...]``.
    """
    return list(INDICES)


def get_index(name: str) -> SpectralIndex:
    """Look an index up by name, ignoring case.

    Args:
        name: an index name such as ``"ndvi"`` or ``"ClGreen"``.

    Returns:
        The registered index.

    Raises:
        ConfigError: if no index has that name; the message suggests close matches and
            lists every name.
    """
    return _REGISTRY.get(name.strip())


def compute_index(name: str, bands: Mapping[str, npt.ArrayLike]) -> _F32:
    """Compute one index with the module's fill policy.

    Args:
        name: index name, any case (see :func:`available_indices`).
        bands: band arrays of one shape, typically ``(H, W)`` float32 raw DNs with NaN
            where missing, keyed ``swir``, ``nir``, ``red``, ``green``, ``blue``; only the
            bands the index uses are needed.

    Returns:
        ``(H, W) float32``: NaN exactly where a band the index uses is NaN, finite elsewhere.

    Raises:
        ConfigError: an unknown index name.
        ValueError: a needed band that is missing, not floating point, or of another shape.
    """
    return get_index(name).compute(bands)


def compute_indices(names: Sequence[str], bands: Mapping[str, npt.ArrayLike]) -> _F32:
    """Compute several indices into one stack.

    Args:
        names: index names, any case; order is kept, repeats are computed again.
        bands: as for :func:`compute_index`; each band is converted and checked once.

    Returns:
        ``(len(names), H, W) float32``, index ``i`` in channel ``i``.

    Raises:
        ConfigError: an unknown index name.
        ValueError: ``names`` given as a single string, or a needed band that is missing,
            not floating point, or of another shape.
    """
    if isinstance(names, str):
        raise ValueError(
            f"names must be a sequence of index names, got the string {names!r}; "
            f"wrap it in a list: [{names!r}]"
        )
    indices = [get_index(name) for name in names]
    arrays = _prepare_bands(bands, indices)
    if arrays:
        shape = next(iter(arrays.values())).shape
    else:
        given = [np.shape(value) for value in bands.values()]
        shape = given[0] if given else ()
    out = np.empty((len(indices), *shape), dtype=np.float32)
    nan_masks: dict[str, npt.NDArray[np.bool_]] = {}
    for i, index in enumerate(indices):
        out[i] = _evaluate(index, arrays, nan_masks)
    return out


def _prepare_bands(
    bands: Mapping[str, npt.ArrayLike], indices: Sequence[SpectralIndex]
) -> dict[str, _F32]:
    """The bands ``indices`` use, as float32 arrays of one shape.

    Raises:
        ValueError: a band missing, not floating point, or of a different shape.
    """
    arrays: dict[str, _F32] = {}
    for index in indices:
        for band in index.bands:
            if band in arrays:
                continue
            if band not in bands:
                raise ValueError(
                    f"index {index.name!r} needs band {band!r} (it uses {list(index.bands)}), "
                    f"but bands has only {sorted(bands)}; pass it keyed by its lower-case name"
                )
            array = np.asarray(bands[band])
            if array.dtype.kind != "f":
                raise ValueError(
                    f"band {band!r} has dtype {array.dtype}; indices need floating-point DNs "
                    f"with NaN where missing, e.g. np.where(x == -32768, np.nan, x)"
                    f".astype(np.float32)"
                )
            arrays[band] = array.astype(np.float32, copy=False)
    shapes = {band: array.shape for band, array in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"bands must all have one shape, got {shapes}")
    return arrays


def _evaluate(
    index: SpectralIndex,
    arrays: Mapping[str, _F32],
    nan_masks: dict[str, npt.NDArray[np.bool_]],
) -> _F32:
    """Apply ``index.fn`` and the fill policy; ``nan_masks`` caches per-band NaN masks."""
    inputs = {band: arrays[band] for band in index.bands}
    with np.errstate(all="ignore"):
        out = np.asarray(index.fn(**inputs), dtype=np.float32)
        if any(np.may_share_memory(out, array) for array in inputs.values()):
            out = out.copy()
        np.nan_to_num(out, copy=False, nan=0.0, posinf=_F32_MAX, neginf=-_F32_MAX)
    missing: npt.NDArray[np.bool_] | None = None
    for band in index.bands:
        if band not in nan_masks:
            nan_masks[band] = np.isnan(inputs[band])
        missing = nan_masks[band] if missing is None else missing | nan_masks[band]
    if missing is not None and missing.any():
        out[missing] = np.nan
    return out
