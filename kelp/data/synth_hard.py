"""The ``hard`` preset of the synthetic generator: what makes the real tiles hard.

``synthesize(..., preset="hard")`` keeps the default plan (tile ids, areas, dates, splits)
and spectral model (:mod:`kelp.data.synth_tiles`) and adds, from streams of its own
(``seeded_rng(seed, 3, area)``, ``seeded_rng(seed, 4, tile)``, ``seeded_rng(seed, 5, 0)``
for the kinds), so the default preset's files do not change: confounders that look like kelp
pixel by pixel and that only context resolves, faint and submerged canopy, miscalibrated and
hazier dates, wider unflagged cloud edges, larger shifts between dates, more DEM voids, biased
annotators, and kelp-free look-alike areas. Reflectances (SWIR1, NIR, Red, Green, Blue):

===============  =====  =====  =====  =====  =====  =============================================
spectrum         SWIR1  NIR    Red    Green  Blue   basis
===============  =====  =====  =====  =====  =====  =============================================
foam (mixed in)  0.06   0.24   0.38   0.40   0.40   whitecaps/foam: flat in the visible, about
                                                    40% lower at 0.85 um and 85% lower at 1.65 um
                                                    (Frouin et al. 1996); 0.40 chosen between
                                                    aged (~0.2, Koepke 1984) and fresh foam (0.5+)
glint (factor)   0.90   0.96   0.97   0.99   1.00   Fresnel reflectance of water, refractive
                                                    index 1.317-1.338 from SWIR to blue: flat
sediment (add)   0.003  0.030  0.070  0.065  0.030  turbid plume: red and green rise most, NIR
                                                    some (e.g. Doxaran et al. 2002)
bloom (add)      0.004  0.060  0.008  0.030  0.010  plume-fed surface algae: a red edge like
                                                    floating algae (Hu 2009); chosen so that a
                                                    dense bloom reaches kelp-like NDVI (~0.35)
===============  =====  =====  =====  =====  =====  =============================================

==================  ==========================================================================
effect              numbers (``s`` = size / 350 scales lengths, as in the default preset)
==================  ==========================================================================
surf                60% of sea dates: foam abundance 0.2-0.7 at the shore fading to 0 over a
                    band 1-3 px wide (surf zones are ~30-90 m), x 0.1-1.1 along the shore
foam streaks        50% of sea dates: 1-8 streaks 4-25 px x max(s, 0.3) long, abundance
                    0.1-0.4, along one wind direction +-0.3 rad (chosen)
sun glint           30% of dates: smooth patches over part of the water, up to 0.02-0.08
                    reflectance, times 0.5-1.5 per pixel (wave facets); chosen so glint
                    matches the NIR contrast of thin canopy
wrack               Poisson(0-24 x s^2) blobs of 1-3 px offshore, canopy abundance 0.3-0.9,
                    unlabelled (drifting kelp; counts chosen)
river plume         45% of sea areas have a mouth on the coast; per date 60% flow with
                    concentration 0.2-1.2 at the mouth, e-folding 15-60 px x s, patchy
                    (x 0-1.5), bloom share 0-1 (chosen so NDVI-like indices are confused)
thin canopy         a bed's outer pixel ring x 0.25-0.5, the next x 0.5-0.8 (chosen: labelled
                    but near the noise)
tide                kelp's excess over water x t in NIR and x t^3 in SWIR1, t in 0.3-1 per
                    date: water absorbs ~4.5 /m at 0.86 um (t = 0.3 is ~13 cm over the
                    canopy) and ~700 /m at 1.6 um; t^3 is chosen milder than that would
                    give (a canopy is partly awash), visible bands unchanged
no canopy           3% of dates (default 15%), chosen so about a third of the train tiles
                    stay kelp-free although look-alike areas add some
radiometry          per band gain 0.9-1.1 on the signal above 7273 DN and offset +-300 DN
                    (+-0.011 reflectance, water's NIR): chosen for calibration and
                    atmospheric-correction differences between dates
haze                40% of dates add 0.5-1.5 x the default haze spectrum (chosen)
clouds              QA flags opacity > 0.7-0.8 (default 0.5); edge ramps 1-1.6 x wider
                    (masks miss thin cloud edges)
shift               windows shifted by up to 10 px each way (default 3): real tiles of one
                    place shift more than 3 px (see ``stress_dems``)
DEM voids           30% of dates add void blobs (smooth noise above 0.8-1.8; none inland)
annotators          50% of tiles with kelp: beds dilated by 1 px, eroded by 1 px (unless
                    nothing would remain) or shifted by 1-2 px (chosen)
look-alike areas    about 12.5% of the tiles (10-15%): the smallest areas, kinds in turn
                    ``inland``, ``no_dem``, ``all_land``, ``all_cloud``; the rest ``coast``
==================  ==========================================================================

**Kinds** (column ``kind`` of ``synthetic_areas.csv``; all but ``coast`` are kelp-free):
``inland``, land everywhere (DEM 3-900 m, lakes flat) with lakes over 8-30% of the area,
soft shores of wetland ``max(2, 3-6 x s)`` px wide (vegetated share 0.9: a vegetation/water
mix looks like canopy) and floating vegetation (canopy spectrum, abundance up to 0.8) within
``max(2, 6 x s)`` px of lake shores; ``no_dem``, a sea area with every DEM pixel -32768;
``all_land``, terrain without water; ``all_cloud``, a sea area under 95-100% cloud on every
date.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np
from scipy import ndimage

from kelp.bands import MISSING
from kelp.data.synth_areas import (
    REF_SIZE,
    Area,
    fractal_noise,
    make_area,
    seeded_rng,
    shift,
    smooth_noise,
)

__all__ = ["HARD_MARGIN", "KINDS", "AreaKind", "HardArea", "HardDate", "area_kinds", "hard_area"]

AreaKind = Literal["coast", "inland", "no_dem", "all_land", "all_cloud"]
KINDS: Final[tuple[AreaKind, ...]] = ("coast", "inland", "no_dem", "all_land", "all_cloud")
HARD_MARGIN: Final = 10  # largest shift of a date's window each way, px
_LOOK_ALIKE_SHARE: Final = 0.125
_SEA_KINDS: Final = ("coast", "no_dem", "all_cloud")


def _bands(*values: float) -> np.ndarray:
    return np.array(values, np.float32)[:, None, None]


_FOAM: Final = _bands(0.06, 0.24, 0.38, 0.40, 0.40)
_GLINT: Final = _bands(0.90, 0.96, 0.97, 0.99, 1.00)
_SEDIMENT: Final = _bands(0.003, 0.030, 0.070, 0.065, 0.030)
_BLOOM: Final = _bands(0.004, 0.060, 0.008, 0.030, 0.010)


@dataclass(frozen=True)
class HardArea:
    """What a hard area adds to its :class:`Area` (whose grid it shares)."""

    kind: AreaKind
    floating: np.ndarray | None  # float32 floating-vegetation abundance (inland lakes)
    mouth: tuple[int, int] | None  # a river mouth on the grid, px
    plume_reach: float  # e-folding distance of the plume, px


def area_kinds(counts: Sequence[int], seed: int) -> list[AreaKind]:
    """Each area's kind: the smallest areas, in seeded order, become look-alikes (kinds in
    turn) while they hold at most 12.5% of the tiles; the rest are ``coast``.

    Args:
        counts: ``(A,)`` tiles per area.
        seed: the dataset's seed.
    """
    rng = seeded_rng(seed, 5, 0)
    order = np.lexsort((rng.random(len(counts)), np.asarray(counts)))
    first = int(rng.integers(len(KINDS) - 1))
    target = round(_LOOK_ALIKE_SHARE * sum(counts))
    kinds: list[AreaKind] = ["coast"] * len(counts)
    taken = 0
    for j, area in enumerate(order.tolist()):
        if taken + counts[area] > target:
            break
        kinds[area] = KINDS[1 + (first + j) % (len(KINDS) - 1)]
        taken += counts[area]
    return kinds


def hard_area(seed: int, index: int, size: int, kind: AreaKind) -> tuple[Area, HardArea]:
    """Area ``index`` of the hard preset, of the given kind, on a ``size + 2 * HARD_MARGIN``
    px grid."""
    rng = seeded_rng(seed, 3, index)
    s = size / REF_SIZE
    if kind in ("inland", "all_land"):
        area, floating = _land_area(rng, size + 2 * HARD_MARGIN, s, lakes=kind == "inland")
        return area, HardArea(kind, floating, None, 0.0)
    area = make_area(seed, index, size, margin=HARD_MARGIN)
    if kind != "coast":
        area = replace(area, bed=np.full_like(area.bed, -9.0))
    if kind == "no_dem":
        area = replace(area, dem=np.full_like(area.dem, MISSING))
    shore = np.argwhere((area.coast_dist > 0) & (area.coast_dist <= 1.5))
    mouth = None
    if rng.random() < 0.45 and shore.size and kind != "all_cloud":
        y, x = shore[rng.integers(len(shore))].tolist()
        mouth = (y, x)
    return area, HardArea(kind, None, mouth, rng.uniform(15, 60) * s)


def _land_area(
    rng: np.random.Generator, n: int, s: float, lakes: bool
) -> tuple[Area, np.ndarray | None]:
    """A kelp-free ``(n, n)`` land area, DEM > 0 everywhere; with lakes (flat DEM), wetland
    shores and floating vegetation when ``lakes``."""
    h = fractal_noise(rng, n, (3, 6, 12, 24, 48), order=3)
    h = (h - h.min()) / max(float(np.ptp(h)), 1e-6)
    base = rng.uniform(3, 400)
    dem = base + rng.uniform(20, 500) * h**1.3
    veg = 1 / (
        1 + np.exp(rng.uniform(0.5, 3.0) * h - 1.5 * fractal_noise(rng, n, (4, 8, 16, 64), 1))
    )
    land = np.ones((n, n), np.float32)
    coast_dist = np.zeros((n, n), np.float32)
    floating = None
    if lakes:
        field = fractal_noise(rng, n, (4, 8, 16), order=1)
        field -= np.quantile(field[::2, ::2], 1 - rng.uniform(0.08, 0.3))  # > 0: lake
        step = float(np.median(np.abs(np.diff(field[::4], axis=1)))) + 1e-6  # per px
        width = max(2.0, rng.uniform(3, 6) * s)
        land = np.clip(0.5 - field / (width * step), 0, 1).astype(np.float32)
        lake = field > 0
        dem = np.where(lake, base, dem)
        veg = np.where(land < 1, 0.9, veg)  # reeds and marsh on the shores
        coast_dist = ndimage.distance_transform_edt(lake).astype(np.float32)
        patches = np.clip(smooth_noise(rng, n, 25) - rng.uniform(0.3, 1.2), 0, 0.8)
        floating = (patches * (lake & (coast_dist <= max(2.0, 6 * s)))).astype(np.float32)
    area = Area(
        dem=np.maximum(1, np.rint(dem)).astype(np.int16),
        land=land,
        veg=veg.astype(np.float32),
        bed=np.full((n, n), -9.0, np.float32),
        coast_dist=coast_dist,
        near_shore=np.exp(-coast_dist / (10 * s)).astype(np.float32),
        kelp_reach=1.5,
        margin=HARD_MARGIN,
    )
    return area, floating


@dataclass
class HardDate:
    """One date's hard-preset draws; ``make_tile`` calls its methods in a fixed order, so
    the date's stream gives the same bytes every time."""

    rng: np.random.Generator
    area: HardArea
    size: int
    offset: tuple[int, int]  # the date's window on the area's grid, px
    overcast: bool  # all_cloud: a cloud over 95-100% of the tile
    cover: float
    qa_threshold: float
    cloud_edge: float
    tide: float
    edge_factors: tuple[float, float]
    voids: bool  # the default DEM voids may apply (not inland)

    @classmethod
    def draw(
        cls, seed: int, index: int, area: HardArea, size: int, offset: tuple[int, int]
    ) -> "HardDate":
        """The draws of tile ``index`` (its stream ``seeded_rng(seed, 4, index)``)."""
        rng = seeded_rng(seed, 4, index)
        return cls(
            rng=rng,
            area=area,
            size=size,
            offset=offset,
            overcast=area.kind == "all_cloud",
            cover=rng.uniform(0.95, 1.0),
            qa_threshold=rng.uniform(0.7, 0.8),
            cloud_edge=1.0 if area.kind == "all_cloud" else rng.uniform(1.0, 1.6),
            tide=rng.uniform(0.3, 1.0),
            edge_factors=(rng.uniform(0.25, 0.5), rng.uniform(0.5, 0.8)),
            voids=area.kind != "inland",
        )

    def canopy(self, kelp: np.ndarray, truth: np.ndarray, land: np.ndarray) -> np.ndarray:
        """Kelp abundance ``(H, W) float32`` with faint bed edges, wrack and floating plants."""
        rng, n = self.rng, self.size
        if truth.any():
            inner = ndimage.binary_erosion(truth)
            core = ndimage.binary_erosion(inner)
            outer, middle = self.edge_factors
            kelp = kelp * np.where(inner, np.where(core, 1.0, middle), outer).astype(np.float32)
        extra = np.zeros((n, n), np.float32)
        count = rng.poisson(rng.uniform(0, 24) * (n / REF_SIZE) ** 2)
        ys, xs = rng.integers(0, n, (2, count))
        sides, values = rng.integers(1, 4, count), rng.uniform(0.3, 0.9, count)
        for y, x, k, v in zip(ys, xs, sides, values, strict=True):
            extra[y : y + k, x : x + k] = v
        if self.area.floating is not None:
            extra = np.maximum(extra, self._window(self.area.floating) * rng.uniform(0.5, 1.0))
        return np.minimum(np.maximum(kelp, extra * (land < 0.5)), 1 - land)

    def surface(self, surface: np.ndarray) -> np.ndarray:
        """``(5, 4)`` endmembers with the kelp column dimmed towards water by the tide."""
        out = surface.copy()
        t = self.tide
        dim = np.array([t**3, t, 1, 1, 1], np.float32)
        out[:, 1] = surface[:, 0] + (surface[:, 1] - surface[:, 0]) * dim
        return out

    def confound(
        self, refl: np.ndarray, abundance: np.ndarray, coast_dist: np.ndarray, water: np.ndarray
    ) -> None:
        """Add surf, foam streaks, sun glint and a river plume to ``refl (5, H, W)`` in place.

        Args:
            refl: reflectance.
            abundance: ``(4, H, W)`` water, kelp, vegetation, bare ground.
            coast_dist: ``(H, W)`` px to the nearest land pixel.
            water: ``(5,)`` the water endmember.
        """
        rng, n = self.rng, self.size
        s = n / REF_SIZE
        foam = np.zeros((n, n), np.float32)
        sea = self.area.kind in _SEA_KINDS
        if sea and rng.random() < 0.6:
            width, strength = rng.uniform(1, 3), rng.uniform(0.2, 0.7)
            decay = np.clip(1 - np.maximum(coast_dist - 1, 0) / width, 0, 1)
            along = np.clip(0.6 + 0.5 * smooth_noise(rng, n, 12), 0.1, 1.1)
            foam = strength * decay * along
        if sea and rng.random() < 0.5:
            wind = rng.uniform(0, np.pi)
            for _ in range(int(rng.integers(1, 9))):
                length = rng.uniform(4, 25) * max(s, 0.3)
                angle = wind + rng.uniform(-0.3, 0.3)
                t = np.linspace(-length / 2, length / 2, int(2 * length) + 1)
                cy, cx = rng.uniform(0, n, 2)
                ys = np.clip(np.rint(cy + t * np.sin(angle)), 0, n - 1).astype(int)
                xs = np.clip(np.rint(cx + t * np.cos(angle)), 0, n - 1).astype(int)
                foam[ys, xs] = np.maximum(foam[ys, xs], rng.uniform(0.1, 0.4))
        if foam.any():
            refl += (foam * abundance[0]) * (_FOAM - water[:, None, None])
        if rng.random() < 0.3:
            field = smooth_noise(rng, n, int(rng.integers(3, 7)))
            glint = rng.uniform(0.02, 0.08) * np.clip(field - rng.uniform(-0.3, 0.8), 0, 1)
            glint *= 0.5 + rng.random((n, n), dtype=np.float32)
            refl += (glint * (abundance[0] + abundance[1])) * _GLINT
        if self.area.mouth is not None and rng.random() < 0.6:
            oy, ox = self.offset
            yy, xx = np.ogrid[:n, :n]
            dist = np.hypot(yy - (self.area.mouth[0] - oy), xx - (self.area.mouth[1] - ox))
            patchy = np.clip(1 + 0.5 * smooth_noise(rng, n, 8), 0, 1.5)
            conc = rng.uniform(0.2, 1.2) * np.exp(-dist / self.area.plume_reach) * patchy
            bloom = rng.uniform(0, 1)
            refl += (conc * abundance[0]).astype(np.float32) * (
                (1 - bloom) * _SEDIMENT + bloom * _BLOOM
            )

    def haze(self, refl: np.ndarray, haze: np.ndarray) -> None:
        """Add thicker haze on 40% of dates to ``refl (5, H, W)`` in place."""
        if self.rng.random() < 0.4:
            thickness = np.maximum(0.6 + 0.3 * fractal_noise(self.rng, self.size, (2, 4), 3), 0)
            refl += self.rng.uniform(0.5, 1.5) * thickness * haze

    def calibration(self, scale: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
        """``(5, 1, 1) float32`` DN per reflectance and DN at 0 with the date's gain/offset."""
        gain = self.rng.uniform(0.9, 1.1, 5)
        bias = self.rng.uniform(-300, 300, 5)
        return _bands(*(scale * gain)), _bands(*(offset + bias))

    def dem(self, dem: np.ndarray) -> np.ndarray:
        """The DEM band ``(H, W) int16`` with the date's extra voids."""
        if self.voids and self.rng.random() < 0.3:
            dem = dem.copy()
            dem[smooth_noise(self.rng, self.size, 6) > self.rng.uniform(0.8, 1.8)] = MISSING
        return dem

    def annotate(self, truth: np.ndarray) -> np.ndarray:
        """The beds as an annotator draws them: dilated, eroded or shifted on half the tiles."""
        rng = self.rng
        if not truth.any() or rng.random() >= 0.5:
            return truth
        how = rng.integers(3)
        if how == 0:
            return ndimage.binary_dilation(truth)
        if how == 1:
            eroded = ndimage.binary_erosion(truth)
            return eroded if eroded.any() else truth
        dy, dx = rng.choice([-2, -1, 0, 1, 2], 2)
        if dy == dx == 0:
            dy = 1
        return shift(truth, int(dy), int(dx))

    def _window(self, grid: np.ndarray) -> np.ndarray:
        oy, ox = self.offset
        return grid[oy : oy + self.size, ox : ox + self.size]
