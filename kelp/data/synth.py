"""Synthetic Kelp Wanted datasets with realistic spectra, areas and artefacts.

The real dataset cannot be downloaded on our machines, so every test and demo runs on what
:func:`synthesize` writes: the same layout, file names, data types and metadata as the
DrivenData download (``train_satellite/``, ``train_kelp/``, ``test_satellite/``,
``metadata.csv``), 7-band int16 images without CRS in the order SWIR1, NIR, Red, Green,
Blue, QA (1 = cloud), DEM (metres, > 0 land), and 0/1 kelp masks.

**Scenes.** Tiles come from areas (AOIs), about one per four tiles, each seen on 2-8 dates.
Test tiles come from held-out places: whole areas, drawn (seeded) until about
``test_fraction`` of the tiles are test tiles, so no place has both train and test tiles
(at least one area stays train).
An area owns a DEM (a ramp across the tile plus fractal noise: the coastline is its zero
contour, land rises to tens or hundreds of metres, the sea is 0), a vegetation/bare-ground
layout and its kelp beds. Its dates share all of that, seen through a window shifted by up
to 3 px each way, and differ in clouds, haze, noise, season, tide and kelp extent; so random
tile splits leak and grouping by area matters. About 12% of areas are (almost) all sea, 15%
mostly land. Kelp grows in patches of smoothed noise on rocky stretches of coast, within 2-7
px of the shore; 20% of areas have no rocky coast and 15% of dates show no canopy.

**Spectral model.** Pixels mix classes linearly by abundance (a coastal pixel is part land,
a kelp pixel part canopy, part water). Reflectances are approximate surface reflectances of
typical Landsat scenes (clear sea water, floating Macrocystis canopy, grass/heath,
soil/rock/peat, thick cloud; haze is an additive path-radiance term strongest in blue):

==============  ======  =====  =====  =====  =====
class           SWIR1   NIR    Red    Green  Blue
==============  ======  =====  =====  =====  =====
water           0.005   0.012  0.025  0.045  0.060
kelp canopy     0.030   0.110  0.030  0.050  0.050
vegetation      0.200   0.320  0.060  0.090  0.050
bare ground     0.280   0.240  0.170  0.130  0.100
cloud           0.420   0.550  0.550  0.560  0.580
haze (added)    0.010   0.030  0.050  0.060  0.080
turbid (added)  0.000   0.004  0.015  0.015  0.008
==============  ======  =====  =====  =====  =====

Digital numbers use the Landsat Collection 2 Level-2 scale (reflectance = DN * 0.0000275 -
0.2), i.e. ``DN = 7273 + K * reflectance`` with ``K = 36,364``: water lands at about
7,450-9,450 DN, land and cloud higher, values are clipped to [-32767, 32767].

**Artefacts.** Sensor noise (55-145 DN) and per-band gain (±4%); clouds (45% of tiles)
flagged in QA where their opacity exceeds 0.5, so their bright edges stay unflagged, with
shadows; thin haze (30%); turbid water near the shore; Landsat 7 SLC-off gaps (-32768 in
all five spectral bands: parallel tilted wedges) on half the tiles dated after 31 May 2003,
about 40% overall; DEM voids (-32768 in the DEM only, 12%) and DEM/spectra misalignment
(5%); label noise on tiles with kelp: a few flipped pixels, spurious or missed blobs and,
on 5% of tiles, a mask shifted by 1-2 px. Labels are the kelp beds whatever covers them, so
kelp under clouds stays 1 as in crowd labels. About a third of train tiles have no kelp and
kelp is about 0.6% of all pixels (0.45-0.8% for 200 tiles, by seed). Spatial scales are
set for 350 px tiles and shrink with the tile size, so smaller tiles keep similar class
fractions (kelp may reach at least 1.5 px offshore); noise and gaps stay per pixel.

**Stress DEMs.** :func:`stress_dems` cuts dates from an area's DEM (:func:`area_dem`, on a
canvas larger than the tile) under conditions harsher than the generator's and seen in real
tiles: windows shifted by up to 20% of the side, a tide flooding the low land (heights below
a per-date water level read 0) and void blobs over up to 30% of the tile. Tests and
``benchmarks/grouping.py`` use it to check area grouping.

**Hard preset.** ``preset="hard"`` (:mod:`kelp.data.synth_hard`, where every number is
documented) keeps the plan and the default's draws and adds, from streams of its own (so the
default's files do not change), what makes real tiles hard: surf, foam, sun glint,
unlabelled drifting wrack and river plumes that look like kelp pixel by pixel; faint bed
edges and canopy dimmed by the tide; per-date gain/offset, more haze, cloud edges flagged
less, shifts of up to 10 px between dates, more DEM voids; annotators who dilate, erode or
shift beds; and kelp-free look-alike areas (about 12.5% of the tiles, ``kind`` ``inland``,
``no_dem``, ``all_land`` or ``all_cloud``; the rest ``coast``).

**Extras** (synthetic only, not in ``metadata.csv``): ``test_kelp/<id>_kelp.tif``, the hidden
labels of the test tiles, and ``synthetic_areas.csv`` (``tile_id,aoi_id,date,split,
kelp_pixels``, plus ``kind`` with the hard preset), each tile's true area, for scoring area
grouping by adjusted Rand index.
"""

import csv
import datetime as dt
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np

from kelp._files import atomic_path
from kelp._progress import track
from kelp.data.io import write_image, write_mask
from kelp.data.synth_areas import Area, area_dem, make_area, seeded_rng, stress_dems
from kelp.data.synth_hard import HardArea, area_kinds, hard_area
from kelp.data.synth_tiles import TilePlan, make_tile
from kelp.errors import ConfigError

__all__ = ["SynthSummary", "area_dem", "stress_dems", "synthesize"]

_FIRST_DAY: Final = dt.date(1999, 7, 1)  # Landsat 7 operational
_N_DAYS: Final = (dt.date(2023, 12, 31) - _FIRST_DAY).days
_DIRS: Final = ("train_satellite", "train_kelp", "test_satellite", "test_kelp")
_AREAS_CSV: Final = "synthetic_areas.csv"
_STAGING: Final = ".synth-partial"
_PRESETS: Final = ("default", "hard")


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote.

    Attributes:
        root: the dataset directory.
        n_train: train tiles (each with a mask).
        n_test: test tiles.
        n_areas: areas (AOIs) the tiles were drawn from.
        seconds: wall time of the generation.
        kelp_fraction: kelp pixels / all pixels over the train masks.
        tiles_without_kelp: train tiles whose mask is empty.
        seed: the seed used.
        size: tile side, px.
        preset: ``default`` or ``hard``.
    """

    root: Path
    n_train: int
    n_test: int
    n_areas: int
    seconds: float
    kelp_fraction: float
    tiles_without_kelp: int
    seed: int
    size: int
    preset: str


def _plan(n_tiles: int, seed: int, test_fraction: float) -> tuple[list[TilePlan], int]:
    """Tile ids, areas, dates and split; tiles of an area are consecutive (area caching) and
    share their split: test tiles come from held-out areas."""
    rng = seeded_rng(seed, 2, 0)
    n_areas = max(1, round(n_tiles / 4))
    counts = np.full(n_areas, 2 if n_tiles >= 2 * n_areas else 1)
    for _ in range(n_tiles - int(counts.sum())):
        counts[rng.choice(np.flatnonzero(counts < 8))] += 1
    numbers: list[int] = []
    while len(numbers) < n_tiles:  # ids like AA498489: two letters, six digits, unique
        numbers = list(dict.fromkeys(numbers + rng.integers(0, 676_000_000, n_tiles).tolist()))
    ids = [
        chr(65 + v // 26_000_000) + chr(65 + v // 1_000_000 % 26) + f"{v % 1_000_000:06d}"
        for v in numbers[:n_tiles]
    ]
    test = _held_out_areas(rng, counts, min(round(n_tiles * test_fraction), n_tiles - 1))
    tiles: list[TilePlan] = []
    for area, count in enumerate(counts.tolist()):
        split: Literal["train", "test"] = "test" if area in test else "train"
        for day in np.sort(rng.choice(_N_DAYS, count, replace=False)).tolist():
            index = len(tiles)
            date = _FIRST_DAY + dt.timedelta(days=day)
            tiles.append(TilePlan(index, ids[index], area, date, split))
    return tiles, n_areas


def _held_out_areas(rng: np.random.Generator, counts: np.ndarray, target: int) -> set[int]:
    """Areas whose tiles are all test tiles: about ``target`` tiles, never every area.

    Areas are taken in a seeded random order while they fit within ``target`` tiles; a
    shortfall is then closed, if possible, by one more area of the missing size or by
    swapping a taken area for one that is that much larger. At least one area stays train.

    Args:
        rng: the plan's generator.
        counts: ``(A,)`` tiles per area.
        target: wanted number of test tiles.

    Returns:
        The held-out area numbers.
    """
    sizes = [int(c) for c in counts]
    chosen: list[int] = []
    for area in rng.permutation(len(sizes)).tolist():
        if len(chosen) < len(sizes) - 1 and sum(sizes[a] for a in chosen) + sizes[area] <= target:
            chosen.append(area)
    short = target - sum(sizes[a] for a in chosen)
    rest = [a for a in range(len(sizes)) if a not in chosen]
    if short > 0 and len(rest) > 1:
        extra = [a for a in rest if sizes[a] == short]
        swaps = [(c, u) for c in chosen for u in rest if sizes[u] - sizes[c] == short]
        if extra:
            chosen.append(extra[0])
        elif swaps:
            chosen[chosen.index(swaps[0][0])] = swaps[0][1]
    return set(chosen)


def _check(
    root: Path, n_tiles: int, seed: int, size: int, test_fraction: float, preset: str
) -> None:
    if preset not in _PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(_PRESETS)}, got {preset!r}")
    if n_tiles < 1:
        raise ConfigError(f"n_tiles must be at least 1, got {n_tiles}")
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    if size < 32:
        raise ConfigError(f"size must be at least 32 px (Kelp Wanted tiles are 350), got {size}")
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if (root / "metadata.csv").exists():
        raise FileExistsError(
            f"{root} already holds a dataset (metadata.csv); choose another --out or delete it"
        )
    taken = [name for name in (*_DIRS, _AREAS_CSV) if (root / name).exists()]
    if taken:
        raise FileExistsError(
            f"{root} already holds {', '.join(taken)} from another dataset or an interrupted "
            "run; choose another --out or delete them"
        )


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def synthesize(
    out: str | os.PathLike[str],
    n_tiles: int,
    seed: int = 0,
    size: int = 350,
    test_fraction: float = 0.2,
    preset: Literal["default", "hard"] = "default",
) -> SynthSummary:
    """Write a synthetic dataset in the Kelp Wanted layout (see the module docstring).

    Files appear under their final names only once all tiles are written (they are built in
    ``out/.synth-partial``, which a rerun after an interruption clears), ``metadata.csv`` last.
    The same arguments give byte-identical files.

    Args:
        out: dataset directory; created if missing, may already hold unrelated files.
        n_tiles: train plus test tiles.
        seed: non-negative seed; every area and tile draws from its own stream of it.
        size: tile side in px (the real tiles are 350).
        test_fraction: about this share of the tiles are test tiles, all of held-out areas
            (whole areas are train or test; at least one area stays train).
        preset: ``default``, or ``hard`` for the harder dataset of
            :mod:`kelp.data.synth_hard` (same tiles, areas and splits).

    Returns:
        A :class:`SynthSummary` of the dataset.

    Raises:
        ConfigError: if ``n_tiles < 1``, ``seed < 0``, ``size < 32``, ``test_fraction`` is
            outside ``[0, 1)`` or ``preset`` is unknown.
        FileExistsError: if ``out`` already holds a dataset.
    """
    root = Path(out)
    _check(root, n_tiles, seed, size, test_fraction, preset)
    start = time.perf_counter()
    tiles, n_areas = _plan(n_tiles, seed, test_fraction)
    hard = preset == "hard"
    counts = np.bincount([t.area for t in tiles], minlength=n_areas).tolist()
    kinds = area_kinds(counts, seed) if hard else []
    staging = root / _STAGING
    shutil.rmtree(staging, ignore_errors=True)
    for name in _DIRS:  # all four folders exist even when a split is empty
        (staging / name).mkdir(parents=True)
    meta: list[tuple[str, str, str, int, str, bool]] = []
    areas: list[tuple[str | int, ...]] = []
    kelp_pixels = tiles_without_kelp = 0
    cached: tuple[int, Area, HardArea | None] | None = None
    for tile in track(tiles, f"synthesizing {n_tiles} tiles"):
        if cached is None or cached[0] != tile.area:
            if hard:
                cached = (tile.area, *hard_area(seed, tile.area, size, kinds[tile.area]))
            else:
                cached = (tile.area, make_area(seed, tile.area, size), None)
        image, mask = make_tile(cached[1], tile, seed, size, cached[2])
        files = {
            "satellite": staging / f"{tile.split}_satellite" / f"{tile.tile_id}_satellite.tif",
            "kelp": staging / f"{tile.split}_kelp" / f"{tile.tile_id}_kelp.tif",
        }
        write_image(files["satellite"], image)
        write_mask(files["kelp"], mask)
        listed = ("satellite", "kelp") if tile.split == "train" else ("satellite",)
        for kind in listed:
            path = files[kind]
            row = (tile.tile_id, path.name, _md5(path), path.stat().st_size, kind)
            meta.append((*row, tile.split == "train"))
        n_kelp = int(mask.sum())
        record = (tile.tile_id, tile.area, tile.date.isoformat(), tile.split, n_kelp)
        areas.append((*record, kinds[tile.area]) if hard else record)
        if tile.split == "train":
            kelp_pixels += n_kelp
            tiles_without_kelp += n_kelp == 0
    columns = ("tile_id", "aoi_id", "date", "split", "kelp_pixels", *(["kind"] if hard else []))
    with (staging / _AREAS_CSV).open("w", newline="") as f:
        csv.writer(f).writerows([columns, *areas])
    for name in (*_DIRS, _AREAS_CSV):
        os.replace(staging / name, root / name)
    staging.rmdir()
    with atomic_path(root / "metadata.csv") as tmp, tmp.open("w", newline="") as f:
        header = ("tile_id", "filename", "md5_hash", "filesize_bytes", "type", "in_train")
        csv.writer(f).writerows([header, *sorted(meta)])
    n_train = sum(tile.split == "train" for tile in tiles)
    return SynthSummary(
        root=root,
        n_train=n_train,
        n_test=n_tiles - n_train,
        n_areas=n_areas,
        seconds=time.perf_counter() - start,
        kelp_fraction=kelp_pixels / (n_train * size * size),
        tiles_without_kelp=tiles_without_kelp,
        seed=seed,
        size=size,
        preset=preset,
    )
