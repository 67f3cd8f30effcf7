"""The typed configuration of a tile's channel stack.

The default stack is chosen for kelp canopy on Landsat:

- the five reflective bands, because floating canopy is defined by its NIR (and SWIR) rise
  over dark water with little change in red/green/blue;
- the 2nd-place set of 16 indices (NDVI, ATSAVI, AVI, CI, ClGreen, GBNDVI, GVMI, IPVI, KIVU,
  MCARI, MVI, NormNIR, PNDVI, SABI, WDRVI, mCRIG; +0.014 Dice for them in the write-up) plus
  NDWI and MNDWI that separate water from land and cloud, all kept on clear water only
  (QA == 0 and DEM <= 0) as the winners did: kelp only grows there, and land/cloud values
  would dominate the ranges;
- context: the QA flag, DEMWM = max(DEM, 0) and a DEM water mask (kelp is never on land),
  1st place's "land closeness" 1 / (1 + 0.1 * distance to land) (beds hug rocky coasts), and
  band offsets from the tile's median over clear water, which remove date-to-date changes in
  illumination and haze;
- neighbourhood filters (Gaussian smoothing, gradient magnitude, Laplacian of Gaussian,
  difference of Gaussians) at sigma 1, 2, 4 px on NIR, SWIR and NDVI, so per-pixel trees see
  the patch shape and texture that the U-Net sees through its receptive field.
"""

from typing import Annotated, Literal

from pydantic import Field, field_validator

from kelp.config import Frozen
from kelp.layout import short_hash

__all__ = [
    "CONTEXT_CHANNELS",
    "DEFAULT_INDICES",
    "FeatureConfig",
    "FilterConfig",
    "FilterKind",
    "SamplingConfig",
]

SpectralBand = Literal["swir", "nir", "red", "green", "blue"]
FilterKind = Literal["gaussian", "gradient", "log", "dog"]
ContextChannel = Literal["qa", "DEMWM", "dem_water", "land_closeness"]

CONTEXT_CHANNELS: tuple[ContextChannel, ...] = ("qa", "DEMWM", "dem_water", "land_closeness")
DEFAULT_INDICES = (
    "NDVI", "ATSAVI", "AVI", "CI", "ClGreen", "GBNDVI", "GVMI", "IPVI", "KIVU", "MCARI",
    "MVI", "NormNIR", "PNDVI", "SABI", "WDRVI", "mCRIG", "NDWI", "MNDWI",
)  # fmt: skip


class FilterConfig(Frozen):
    """NaN-aware neighbourhood filters.

    Attributes:
        channels: channels to filter: band names, index names or context channel names.
        sigmas: Gaussian scales in pixels, each > 0.
        kinds: which filters, each at every sigma.
    """

    channels: tuple[str, ...] = ("nir", "swir", "NDVI")
    sigmas: tuple[float, ...] = (1.0, 2.0, 4.0)
    kinds: tuple[FilterKind, ...] = ("gaussian", "gradient", "log", "dog")

    @field_validator("sigmas")
    @classmethod
    def _positive(cls, sigmas: tuple[float, ...]) -> tuple[float, ...]:
        bad = [s for s in sigmas if s <= 0]
        if bad:
            raise ValueError(f"filter sigmas must be > 0 pixels, got {bad}")
        return sigmas


class SamplingConfig(Frozen):
    """Which pixels of a train tile become table rows.

    Attributes:
        buffer: non-kelp pixels within this many pixels of kelp are all kept ("buffer").
        n_random: other pixels drawn at random per tile ("random").
        dense: keep every pixel instead (kind "dense", weight 1).
        seed: seeds the random pixels (with each tile id); was ``[folds] seed`` in v0.1.
    """

    buffer: Annotated[int, Field(ge=0)] = 5
    n_random: Annotated[int, Field(ge=0)] = 1000
    dense: bool = False
    seed: int = 0


class FeatureConfig(Frozen):
    """What goes into a tile's ``(C, H, W)`` channel stack, and how table rows are sampled.

    Attributes:
        bands: spectral bands kept as channels (raw DNs, missing as NaN).
        indices: spectral index names (see ``kelp.features.indices``).
        water_only: keep index values on clear water only (QA == 0, DEM <= 0), NaN elsewhere.
        context: extra channels from the QA and DEM bands.
        offsets: bands to which a channel "<band>_offset" = band - median over clear water is
            added.
        filters: neighbourhood filters.
        sampling: pixel sampling for the tree table.
        workers: processes for the build (1: this process); not part of any hash.
        on_error: ``fail`` stops at the first bad tile (keeping the tiles written so far);
            ``skip`` leaves it out and lists it in the manifest. Not part of any hash.
    """

    bands: tuple[SpectralBand, ...] = ("swir", "nir", "red", "green", "blue")
    indices: tuple[str, ...] = DEFAULT_INDICES
    water_only: bool = True
    context: tuple[ContextChannel, ...] = CONTEXT_CHANNELS
    offsets: tuple[SpectralBand, ...] = ("swir", "nir", "red", "green", "blue")
    filters: FilterConfig = FilterConfig()
    sampling: SamplingConfig = SamplingConfig()
    workers: Annotated[int, Field(ge=1)] = 1
    on_error: Literal["fail", "skip"] = "fail"

    def stack_hash(self) -> str:
        """Short hash of everything that changes the channel stack (not the sampling)."""
        return short_hash(self.model_dump(mode="json", exclude={"sampling", *_HOW}))

    def table_hash(self) -> str:
        """Short hash of everything that changes the table rows of a tile."""
        return short_hash(self.model_dump(mode="json", exclude=set(_HOW)))


# how the build runs, not what it computes
_HOW = ("workers", "on_error")
