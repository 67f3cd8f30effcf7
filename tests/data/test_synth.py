"""Tests for the synthetic Kelp Wanted generator: layout, determinism and realism."""

import csv
import hashlib
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from kelp.bands import MISSING
from kelp.data.io import read_image, read_mask
from kelp.data.synth import SynthSummary, synthesize

N_TILES, SIZE, SEED = 40, 96, 0
SWIR, NIR, BLUE, QA, DEM = 0, 1, 4, 5, 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return synthesize(tmp_path_factory.mktemp("synth") / "data", N_TILES, seed=SEED, size=SIZE)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _areas(summary: SynthSummary) -> list[dict[str, str]]:
    return _rows(summary.root / "synthetic_areas.csv")


def _tiles(summary: SynthSummary) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """``(row of synthetic_areas.csv, image (7, H, W), mask (H, W))`` for every tile."""
    out = []
    for row in _areas(summary):
        tid, split = row["tile_id"], row["split"]
        image, _ = read_image(summary.root / f"{split}_satellite" / f"{tid}_satellite.tif")
        mask = read_mask(summary.root / f"{split}_kelp" / f"{tid}_kelp.tif")
        out.append((row, image, mask))
    return out


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_and_metadata(dataset: SynthSummary) -> None:
    root = dataset.root
    with (root / "metadata.csv").open(newline="") as f:
        header = next(csv.reader(f))
    assert header == ["tile_id", "filename", "md5_hash", "filesize_bytes", "type", "in_train"]
    rows = _rows(root / "metadata.csv")
    folder = {
        ("satellite", "True"): "train_satellite",
        ("kelp", "True"): "train_kelp",
        ("satellite", "False"): "test_satellite",
    }
    listed = set()
    for row in rows:
        path = root / folder[row["type"], row["in_train"]] / row["filename"]
        suffix = "_satellite.tif" if row["type"] == "satellite" else "_kelp.tif"
        assert row["filename"] == row["tile_id"] + suffix
        assert hashlib.md5(path.read_bytes()).hexdigest() == row["md5_hash"]
        assert path.stat().st_size == int(row["filesize_bytes"])
        listed.add(path)
    on_disk = {p for name in set(folder.values()) for p in (root / name).glob("*.tif")}
    assert listed == on_disk
    satellites = [r["tile_id"] for r in rows if r["type"] == "satellite"]
    assert len(satellites) == len(set(satellites)) == N_TILES
    assert all(re.fullmatch(r"[A-Z]{2}\d{6}", tid) for tid in satellites)
    # Hidden test labels exist for every test tile but are not part of the metadata.
    test_ids = {r["tile_id"] for r in rows if r["in_train"] == "False"}
    assert {p.name.removesuffix("_kelp.tif") for p in (root / "test_kelp").glob("*")} == test_ids
    assert not any(r["type"] == "kelp" and r["in_train"] == "False" for r in rows)


def test_counts_and_areas(dataset: SynthSummary) -> None:
    assert dataset.n_test == round(N_TILES * 0.2)
    assert dataset.n_train + dataset.n_test == N_TILES
    assert dataset.n_areas == N_TILES // 4
    areas = _areas(dataset)
    assert [len(areas), sum(r["split"] == "test" for r in areas)] == [N_TILES, dataset.n_test]
    per_area: dict[str, set[str]] = defaultdict(set)
    for row in areas:
        per_area[row["aoi_id"]].add(row["date"])
    assert len(per_area) == dataset.n_areas
    assert all(2 <= len(dates) <= 8 for dates in per_area.values())  # distinct dates per area


def test_test_tiles_come_from_held_out_areas(dataset: SynthSummary, tmp_path: Path) -> None:
    summaries = [dataset]
    summaries += [
        synthesize(tmp_path / f"s{seed}", 60, seed=seed, size=32, test_fraction=fraction)
        for seed, fraction in ((1, 0.2), (2, 0.35), (3, 0.1))
    ]
    for summary, fraction in zip(summaries, (0.2, 0.2, 0.35, 0.1)):
        splits: dict[str, set[str]] = defaultdict(set)
        for row in _areas(summary):
            splits[row["aoi_id"]].add(row["split"])
        assert all(len(s) == 1 for s in splits.values())  # no area is both train and test
        assert {"train"} in splits.values()
        n_tiles = summary.n_train + summary.n_test
        assert abs(summary.n_test - fraction * n_tiles) <= 2


def test_files_are_int16_without_crs(dataset: SynthSummary) -> None:
    for path in (dataset.root / "train_satellite").glob("*.tif"):
        with rasterio.open(path) as src:
            assert (src.count, src.height, src.width) == (7, SIZE, SIZE)
            assert src.dtypes == ("int16",) * 7
            assert src.crs is None
    for path in (dataset.root / "train_kelp").glob("*.tif"):
        with rasterio.open(path) as src:
            assert (src.count, src.height, src.width, src.crs) == (1, SIZE, SIZE, None)


def test_summary_matches_masks(dataset: SynthSummary) -> None:
    train = [(row, mask) for row, _, mask in _tiles(dataset) if row["split"] == "train"]
    pixels = [int(mask.sum()) for _, mask in train]
    assert pixels == [int(row["kelp_pixels"]) for row, _ in train]
    assert dataset.kelp_fraction == pytest.approx(sum(pixels) / (len(train) * SIZE * SIZE))
    assert dataset.tiles_without_kelp == pixels.count(0)


def test_kelp_is_rare_and_some_tiles_have_none(dataset: SynthSummary) -> None:
    assert 0.001 < dataset.kelp_fraction < 0.01
    assert 0.15 * dataset.n_train < dataset.tiles_without_kelp < 0.7 * dataset.n_train


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    first = synthesize(tmp_path / "a", 6, seed=3, size=64)
    again = synthesize(tmp_path / "b", 6, seed=3, size=64)
    other = synthesize(tmp_path / "c", 6, seed=4, size=64)
    assert _all_files(first.root) == _all_files(again.root)
    ids = [{r["tile_id"] for r in _areas(s)} for s in (first, other)]
    assert ids[0].isdisjoint(ids[1])
    images = [sorted(_all_files(s.root / "train_satellite").values()) for s in (first, other)]
    assert images[0] != images[1]


def test_dem_marks_land_and_sea(dataset: SynthSummary) -> None:
    land_swir, sea_swir = [], []
    for _, image, _ in _tiles(dataset):
        dem = image[DEM]
        valid = dem != MISSING
        assert (dem[valid & (dem <= 0)] == 0).all()
        assert dem[valid].max() < 1000
        clear = valid & (image[QA] == 0) & (image[SWIR] != MISSING)
        land_swir.append(image[SWIR][clear & (dem > 0)])
        sea_swir.append(image[SWIR][clear & (dem <= 0)])
    # Land (SWIR reflectance 0.2-0.3) is far brighter than water (0.005) at the DEM coastline.
    assert np.concatenate(land_swir).mean() > np.concatenate(sea_swir).mean() + 4000
    assert 7273 < np.median(np.concatenate(sea_swir)) < 9500


def _best_correlation(a: np.ndarray, b: np.ndarray, reach: int = 6) -> float:
    best = -1.0
    n = a.shape[0]
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            wa = a[max(dy, 0) : n + min(dy, 0), max(dx, 0) : n + min(dx, 0)]
            wb = b[max(-dy, 0) : n + min(-dy, 0), max(-dx, 0) : n + min(-dx, 0)]
            ok = (wa != MISSING) & (wb != MISSING)
            if wa[ok].std() > 0 and wb[ok].std() > 0:
                best = max(best, float(np.corrcoef(wa[ok], wb[ok])[0, 1]))
    return best


def test_dem_is_shared_by_the_dates_of_an_area(dataset: SynthSummary) -> None:
    by_area: dict[str, list[np.ndarray]] = defaultdict(list)
    for row, image, _ in _tiles(dataset):
        by_area[row["aoi_id"]].append(image[DEM])
    compared = 0
    for dems in by_area.values():
        if any(d[d != MISSING].std() == 0 for d in dems[:2]):
            continue  # all sea: nothing to correlate
        assert _best_correlation(dems[0], dems[1]) > 0.95
        compared += 1
    assert compared >= 3
    # Different areas have different terrain.
    firsts = [dems[0] for dems in by_area.values() if dems[0].std() > 0]
    assert _best_correlation(firsts[0], firsts[1]) < 0.9


def test_slc_stripes_hit_all_spectral_bands(dataset: SynthSummary) -> None:
    striped = 0
    for row, image, _ in _tiles(dataset):
        missing = image[:5] == MISSING
        assert (missing == missing[0]).all()  # the same gap in all five spectral bands
        assert not (image[QA] == MISSING).any()
        if missing[0].any():
            striped += 1
            assert row["date"] > "2003-05-31"  # scan-line corrector failure
    assert 0.1 * N_TILES <= striped <= 0.7 * N_TILES


def test_dem_voids_are_in_the_dem_only(dataset: SynthSummary) -> None:
    voids = [(image[DEM] == MISSING) & (image[0] != MISSING) for _, image, _ in _tiles(dataset)]
    assert any(v.any() for v in voids)


def test_clouds_are_flagged_but_their_edges_are_not(dataset: SynthSummary) -> None:
    flagged, edge, clear = [], [], []
    for _, image, _ in _tiles(dataset):
        qa = image[QA] == 1
        assert set(np.unique(image[QA])) <= {0, 1}
        blue = image[BLUE].astype(float)
        valid = (image[BLUE] != MISSING) & (image[DEM] <= 0)  # over water: dark background
        if not qa.any():
            continue
        ring = ndimage.binary_dilation(qa, iterations=2) & ~qa
        far = ~ndimage.binary_dilation(qa, iterations=20)
        flagged.append(blue[qa & valid])
        edge.append(blue[ring & valid])
        clear.append(blue[far & valid])
    assert len(flagged) >= 5
    means = [np.concatenate(v).mean() for v in (flagged, edge, clear)]
    assert means[0] > means[1] > means[2] + 1000


def test_kelp_is_brighter_in_nir_than_water_as_far_from_shore(dataset: SynthSummary) -> None:
    # Compare at equal distance from land: shore pixels are brightened by land and turbidity.
    differences, weights = [], []
    for _, image, mask in _tiles(dataset):
        land = image[DEM] > 0
        if not mask.any() or not land.any():
            continue
        distance = np.rint(ndimage.distance_transform_edt(~land))
        clear = (image[QA] == 0) & (image[NIR] != MISSING) & (image[DEM] == 0)
        kelp = mask.astype(bool)
        water = ~ndimage.binary_dilation(kelp, iterations=2)
        for d in range(1, 7):
            kelp_nir = image[NIR][kelp & clear & (distance == d)]
            water_nir = image[NIR][water & clear & (distance == d)]
            if kelp_nir.size and water_nir.size > 20:
                differences.append(kelp_nir.mean() - water_nir.mean())
                weights.append(kelp_nir.size)
    assert sum(weights) > 200
    assert np.average(differences, weights=weights) > 500


def test_labels_are_noisy(dataset: SynthSummary) -> None:
    # Kelp grows only in water, so labelled kelp on land comes from the modelled label noise.
    on_land = [
        int((mask.astype(bool) & (image[DEM] > 0)).sum()) for _, image, mask in _tiles(dataset)
    ]
    kelp = sum(int(mask.sum()) for _, _, mask in _tiles(dataset))
    assert sum(n > 0 for n in on_land) >= 2
    assert sum(on_land) < 0.1 * kelp


@pytest.mark.parametrize("size", [32, 45])
def test_small_and_odd_sizes(tmp_path: Path, size: int) -> None:
    summary = synthesize(tmp_path / "d", 3, seed=1, size=size, test_fraction=0)
    assert summary.n_test == 0
    assert not any((summary.root / "test_satellite").iterdir())
    for row, image, mask in _tiles(summary):
        assert image.shape == (7, size, size)
        assert mask.shape == (size, size)
        assert row["split"] == "train"


def test_refuses_to_overwrite_a_dataset(tmp_path: Path) -> None:
    summary = synthesize(tmp_path, 2, size=32)
    before = _all_files(tmp_path)
    with pytest.raises(FileExistsError, match="already holds a dataset.*--out"):
        synthesize(tmp_path, 2, seed=1, size=32)
    assert _all_files(summary.root) == before


def test_refuses_leftover_tiles_and_clears_its_own_staging(tmp_path: Path) -> None:
    (tmp_path / "leftover" / "train_kelp").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="train_kelp"):
        synthesize(tmp_path / "leftover", 2, size=32)
    staging = tmp_path / "fresh" / ".synth-partial"
    staging.mkdir(parents=True)
    (staging / "half-written.tif").write_bytes(b"")
    synthesize(tmp_path / "fresh", 2, size=32)
    assert not staging.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_tiles": 0}, "n_tiles must be at least 1"),
        ({"size": 31}, "size must be at least 32"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \[0, 1\)"),
        ({"test_fraction": -0.1}, r"test_fraction must be in \[0, 1\)"),
        ({"seed": -1}, "seed must be a non-negative"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, float], message: str) -> None:
    args: dict[str, Any] = {"n_tiles": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        synthesize(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()
