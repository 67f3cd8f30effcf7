"""Tests for the ``hard`` preset of the synthetic generator (kelp.data.synth_hard)."""

import csv
import datetime as dt
import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from kelp.bands import MISSING
from kelp.cli import app
from kelp.config import load_config, validate_config
from kelp.data.config import DataConfig, SynthConfig
from kelp.data.io import read_image, read_mask
from kelp.data.stage import prepare_dataset
from kelp.data.synth import SynthSummary, synthesize
from kelp.data.synth_areas import MARGIN, make_area
from kelp.data.synth_hard import HARD_MARGIN, KINDS, HardArea, HardDate, area_kinds, hard_area
from kelp.data.synth_tiles import TilePlan, make_tile
from kelp.errors import ConfigError
from kelp.layout import RunLayout

N_TILES, SIZE, SEED = 96, 64, 0
SWIR, NIR, RED, BLUE, QA, DEM = 0, 1, 2, 4, 5, 6
K = 36_364  # DN per unit reflectance; DN 7273 is reflectance 0
Tile = tuple[dict[str, str], np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    root = tmp_path_factory.mktemp("hard") / "data"
    return synthesize(root, N_TILES, seed=SEED, size=SIZE, preset="hard")


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return synthesize(tmp_path_factory.mktemp("default") / "data", N_TILES, seed=SEED, size=SIZE)


def _rows(summary: SynthSummary) -> list[dict[str, str]]:
    with (summary.root / "synthetic_areas.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _tiles(summary: SynthSummary, kind: str | None = None) -> list[Tile]:
    """``(row, image (7, H, W), mask (H, W) bool)`` of every tile (of one ``kind``)."""
    out = []
    for row in _rows(summary):
        if kind is not None and row.get("kind", "coast") != kind:
            continue
        tid, split = row["tile_id"], row["split"]
        image, _ = read_image(summary.root / f"{split}_satellite" / f"{tid}_satellite.tif")
        mask = read_mask(summary.root / f"{split}_kelp" / f"{tid}_kelp.tif").astype(bool)
        out.append((row, image, mask))
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_hard_preset_is_deterministic_and_differs_from_default(tmp_path: Path) -> None:
    first = synthesize(tmp_path / "a", 20, seed=2, size=48, preset="hard")
    again = synthesize(tmp_path / "b", 20, seed=2, size=48, preset="hard")
    plain = synthesize(tmp_path / "c", 20, seed=2, size=48)
    assert _files(first.root) == _files(again.root)
    assert first.preset == "hard" and plain.preset == "default"
    hard_images = _files(first.root / "train_satellite")
    plain_images = _files(plain.root / "train_satellite")
    assert hard_images.keys() == plain_images.keys()  # same plan: ids, areas, splits
    assert all(hard_images[k] != plain_images[k] for k in hard_images)


def test_default_preset_is_unchanged(tmp_path: Path) -> None:
    explicit = synthesize(tmp_path / "a", 8, seed=7, size=48, preset="default")
    omitted = synthesize(tmp_path / "b", 8, seed=7, size=48)
    assert _files(explicit.root) == _files(omitted.root)
    with (omitted.root / "synthetic_areas.csv").open(newline="") as f:
        assert next(csv.reader(f)) == ["tile_id", "aoi_id", "date", "split", "kelp_pixels"]
    # The default's pixels, labels and areas as generated before the hard preset existed:
    # update this digest only when the default generator is changed on purpose.
    digest = hashlib.md5((omitted.root / "synthetic_areas.csv").read_bytes())
    for _, image, mask in _tiles(omitted):
        digest.update(image.tobytes())
        digest.update(mask.astype(np.uint8).tobytes())
    assert digest.hexdigest() == "16a49d8114c6604f6537870222e5bee8"


def test_every_kind_appears_and_look_alikes_hold_no_kelp(hard: SynthSummary) -> None:
    rows = _rows(hard)
    assert {row["kind"] for row in rows} == set(KINDS)
    look_alikes = [row for row in rows if row["kind"] != "coast"]
    assert 0.08 <= len(look_alikes) / len(rows) <= 0.125
    kinds_per_area: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        kinds_per_area[row["aoi_id"]].add(row["kind"])
    assert all(len(kinds) == 1 for kinds in kinds_per_area.values())  # a kind is per area
    for row, _, mask in _tiles(hard):
        if row["kind"] != "coast":
            assert row["kelp_pixels"] == "0" and not mask.any()


def test_kelp_stays_rare_and_a_share_of_tiles_has_none(hard: SynthSummary) -> None:
    assert 0.001 < hard.kelp_fraction < 0.015
    assert 0.15 * hard.n_train < hard.tiles_without_kelp < 0.7 * hard.n_train


def test_no_dem_tiles_have_every_dem_pixel_missing(hard: SynthSummary) -> None:
    tiles = _tiles(hard, "no_dem")
    assert tiles
    for _, image, _ in tiles:
        assert (image[DEM] == MISSING).all()
        assert (image[SWIR] != MISSING).any()  # the spectra are there


def test_inland_tiles_are_land_with_lakes(hard: SynthSummary) -> None:
    tiles = _tiles(hard, "inland")
    assert tiles
    dark = 0
    for _, image, _ in tiles:
        assert (image[DEM] > 0).all()  # lakes included: no sea, no void
        clear = (image[QA] == 0) & (image[SWIR] != MISSING)
        dark += int((clear & (image[SWIR] < 7273 + 0.05 * K)).sum())  # open water in SWIR
    assert dark > 20


def test_all_land_and_all_cloud_tiles(hard: SynthSummary) -> None:
    for _, image, _ in _tiles(hard, "all_land"):
        assert (image[DEM][image[DEM] != MISSING] > 0).all()
        clear = (image[SWIR] != MISSING) & (image[QA] == 0)
        assert np.quantile(image[SWIR][clear], 0.01) > 7273 + 0.08 * K  # no water anywhere
    clouded = _tiles(hard, "all_cloud")
    assert clouded
    for _, image, _ in clouded:
        assert (image[QA] == 1).mean() > 0.7
        assert np.median(image[BLUE][image[BLUE] != MISSING]) > 7273 + 0.3 * K


def _look_alike_pixels(summary: SynthSummary) -> int:
    """Offshore unlabelled pixels of coast tiles whose NDVI exceeds the median NDVI of
    the tile's labelled kelp."""
    count = 0
    for _, image, mask in _tiles(summary, "coast"):
        valid = (image[SWIR] != MISSING) & (image[QA] == 0)
        if not (mask & valid).any():
            continue
        nir, red = (image[[NIR, RED]].astype(float) - 7273) / K
        ndvi = (nir - red) / (np.abs(nir) + np.abs(red) + 1e-6)
        offshore = ndimage.distance_transform_edt(image[DEM] == 0) >= 3
        unlabelled = ~ndimage.binary_dilation(mask, iterations=3)
        count += int((ndvi[valid & offshore & unlabelled] > np.median(ndvi[mask & valid])).sum())
    return count


def test_confounders_look_like_kelp_more_than_in_the_default(
    hard: SynthSummary, default: SynthSummary
) -> None:
    assert _look_alike_pixels(hard) > 3 * max(_look_alike_pixels(default), 100)


def _coast_area_with_a_river(size: int) -> tuple[np.ndarray, np.ndarray, HardArea]:
    """``(land, coast_dist, hard area)`` of the first seeded coastal area with a river."""
    for index in range(50):
        area, extra = hard_area(SEED, index, size, "coast")
        if extra.mouth is not None and 0.2 < (area.land > 0.5).mean() < 0.8:
            return area.land, area.coast_dist, extra
    raise AssertionError("no coastal area with a river mouth")


def test_surf_foam_and_plumes_brighten_the_water() -> None:
    size = 96
    land_grid, dist_grid, area = _coast_area_with_a_river(size)
    water = np.array([0.005, 0.012, 0.025, 0.045, 0.060], np.float32)
    win = np.s_[HARD_MARGIN : HARD_MARGIN + size, HARD_MARGIN : HARD_MARGIN + size]
    land, dist = land_grid[win], dist_grid[win]
    abundance = np.stack([1 - land, 0 * land, land, 0 * land])
    assert area.mouth is not None
    yy, xx = np.ogrid[:size, :size]
    mouth = (np.hypot(yy - area.mouth[0] + HARD_MARGIN, xx - area.mouth[1] + HARD_MARGIN) < 4) & (
        land < 0.2
    )
    surf_dates = glint_dates = sediment_dates = bloom_dates = 0
    for index in range(40):
        date = HardDate.draw(SEED, index, area, size, (HARD_MARGIN, HARD_MARGIN))
        refl = np.zeros((5, size, size), np.float32)
        date.confound(refl, abundance, dist, water)
        offshore = refl[:, (dist >= 8) & (dist <= 12)].mean(axis=1)
        if offshore[BLUE] > 0.01:  # sun glint: nearly flat from blue to SWIR
            glint_dates += 1
            assert 0.85 < offshore[NIR] / offshore[BLUE] <= 1.0
            assert 0.8 < offshore[SWIR] / offshore[BLUE] < offshore[NIR] / offshore[BLUE]
        # Surf: the shore above what reaches offshore (glint).
        surf = refl[:, (dist == 1) & (land < 0.5)].mean(axis=1) - offshore
        if surf[BLUE] > 0.03:  # whitecaps: flat in the visible, lower NIR, far lower SWIR
            surf_dates += 1
            assert surf[SWIR] < 0.35 * surf[BLUE]
            assert 0.5 * surf[BLUE] < surf[NIR] < 0.85 * surf[BLUE]
        plume = refl[:, mouth].mean(axis=1)
        sediment_dates += plume[RED] - plume[BLUE] > 0.02  # foam and glint cannot do this
        bloom_dates += plume[NIR] - plume[RED] > 0.01  # a red edge, as kelp has
    assert surf_dates >= 12 and glint_dates >= 3
    assert sediment_dates >= 3 and bloom_dates >= 2


def test_wrack_is_canopy_offshore_and_bed_edges_are_faint() -> None:
    size = 350
    area = HardArea("coast", None, None, 1.0)
    truth = np.zeros((size, size), bool)
    truth[100:120, 100:120] = True
    land = np.zeros((size, size), np.float32)
    land[:, 300:] = 1
    specks = 0
    for index in range(20):
        date = HardDate.draw(SEED, index, area, size, (0, 0))
        kelp = date.canopy(truth.astype(np.float32), truth, land)
        outer, middle = date.edge_factors
        assert kelp[100, 110] == pytest.approx(outer) and kelp[101, 110] == pytest.approx(middle)
        assert kelp[110, 110] == 1.0 and 0.25 <= outer <= 0.5 <= middle <= 0.8
        assert not kelp[:, 300:].any()  # never on land
        outside = kelp * ~ndimage.binary_dilation(truth, iterations=2)
        labels, n = ndimage.label(outside > 0)
        specks += n
        if n:
            blobs = np.bincount(labels.ravel())[1:]
            assert np.median(blobs) <= 9 and blobs.max() <= 18  # 1-3 px blobs, some touching
    assert specks >= 20


def test_tide_dims_the_kelp_nir_and_swir_only() -> None:
    surface = np.array(
        [[0.005, 0.03, 0.2, 0.28], [0.012, 0.11, 0.32, 0.24], [0.025, 0.03, 0.06, 0.17],
         [0.045, 0.05, 0.09, 0.13], [0.06, 0.05, 0.05, 0.1]],
        np.float32,
    )  # fmt: skip
    tides = []
    for index in range(30):
        date = HardDate.draw(SEED, index, HardArea("coast", None, None, 1.0), 64, (0, 0))
        dimmed = date.surface(surface)
        t = (dimmed[NIR, 1] - surface[NIR, 0]) / (surface[NIR, 1] - surface[NIR, 0])
        swir = (dimmed[SWIR, 1] - surface[SWIR, 0]) / (surface[SWIR, 1] - surface[SWIR, 0])
        assert swir == pytest.approx(t**3, rel=1e-4)
        np.testing.assert_allclose(dimmed[2:], surface[2:], rtol=1e-6)
        np.testing.assert_array_equal(dimmed[:, [0, 2, 3]], surface[:, [0, 2, 3]])
        tides.append(t)
    assert 0.3 <= min(tides) < 0.5 and 0.8 < max(tides) <= 1.0


def test_annotators_dilate_erode_or_shift_half_the_beds() -> None:
    truth = np.zeros((64, 64), bool)
    truth[20:30, 20:30] = True
    outcomes = {"same": 0, "dilated": 0, "eroded": 0, "shifted": 0}
    for index in range(200):
        drawn = HardDate.draw(SEED, index, HardArea("coast", None, None, 1.0), 64, (0, 0))
        mask = drawn.annotate(truth)
        if (mask == truth).all():
            outcomes["same"] += 1
        elif (mask >= truth).all():
            outcomes["dilated"] += 1
        elif (mask <= truth).all():
            outcomes["eroded"] += 1
        else:
            assert mask.sum() == truth.sum()
            outcomes["shifted"] += 1
    assert all(count >= 20 for count in outcomes.values())
    assert 70 <= outcomes["same"] <= 130


def _offset(dem: np.ndarray, canvas: np.ndarray, reach: int) -> tuple[int, int]:
    """Where the tile's DEM sits on its area's canvas."""
    size = dem.shape[0]
    for oy in range(reach + 1):
        for ox in range(reach + 1):
            if (canvas[oy : oy + size, ox : ox + size] == dem)[dem != MISSING].all():
                return oy, ox
    raise AssertionError("tile not found on its area")


@pytest.mark.parametrize(("preset", "spread"), [("default", 2 * MARGIN), ("hard", 14)])
def test_dates_shift_by_up_to_ten_px_in_the_hard_preset(preset: str, spread: int) -> None:
    size = 64
    for index in range(30):
        if preset == "hard":
            area, extra = hard_area(SEED, index, size, "coast")
        else:
            area, extra = make_area(SEED, index, size), None
        if area.dem.std() > 20:  # terrain to match against
            break
    offsets = []
    for i in range(25):
        plan = TilePlan(i, "x", index, dt.date(2000, 1, 1), "train")
        image, _ = make_tile(area, plan, SEED, size, extra)
        offsets.append(_offset(image[DEM], area.dem, 2 * area.margin))
    widest = int(np.ptp(np.array(offsets), axis=0).max())
    assert widest >= spread if preset == "hard" else widest <= spread


def test_area_kinds_take_the_smallest_areas_in_turn() -> None:
    counts = [8, 2, 3, 2, 5, 2, 4, 2, 6, 2, 7, 3, 2, 8, 4, 8]
    kinds = area_kinds(counts, seed=0)
    special = [a for a, kind in enumerate(kinds) if kind != "coast"]
    assert sum(counts[a] for a in special) <= round(0.125 * sum(counts))
    assert {kinds[a] for a in special} == set(KINDS[1:])
    assert all(counts[a] == 2 for a in special)
    assert area_kinds(counts, seed=0) == kinds
    assert area_kinds([2], seed=0) == ["coast"]


def test_synth_config_and_toml_take_the_preset(tmp_path: Path) -> None:
    toml = tmp_path / "kelp.toml"
    toml.write_text('[data]\npath = "d"\n[data.synth]\ntiles = 8\nsize = 48\npreset = "hard"\n')
    config = load_config(toml, DataConfig, "data")
    assert config.synth is not None and config.synth.preset == "hard"
    assert SynthConfig().preset == "default"
    data = prepare_dataset(config, RunLayout.of(tmp_path / "run", tmp_path / "d"))
    with (data / "synthetic_areas.csv").open(newline="") as f:
        assert next(csv.reader(f))[-1] == "kind"
    with pytest.raises(ConfigError, match="preset.*'default' or 'hard'"):
        validate_config(SynthConfig, {"preset": "harder"})


def test_unknown_preset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="preset must be one of default, hard, got 'harder'"):
        synthesize(tmp_path / "x", 4, preset="harder")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_cli_preset_option(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["-q", "data", "synth", "--out", str(tmp_path / "d"), "--tiles", "6", "--size", "48"]
    result = runner.invoke(app, [*args, "--preset", "hard"])
    assert result.exit_code == 0, result.output
    with (tmp_path / "d" / "synthetic_areas.csv").open(newline="") as f:
        assert "kind" in next(csv.reader(f))
    result = runner.invoke(app, [*args, "--preset", "harder"])
    assert result.exit_code == 2
    assert "Invalid value for '--preset'" in result.output and "harder" in result.output
