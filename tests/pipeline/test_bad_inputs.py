"""The bad-input corpus: every broken input users meet, through every command that reads it.

Each case damages one tile (or file) of a copy of the tiny run's dataset and runs it through
`kelp data check`, `kelp build-features --on-error skip`, `kelp predict --on-error skip` and
the data stages of `kelp run`. Every case must be named in one line, never raise a
traceback, and leave every good tile processed. Exit statuses: `data check` 1 on any problem;
`build-features --on-error skip` 0 (the tile listed as skipped); `predict --on-error skip` 0
when every test tile got a mask (an unpredictable one an all-zero mask, listed), 1 when an
unreadable one is missing from submission.tar; `kelp run` 0 (bad train tiles left out of the
folds, listed).
"""

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner, Result

from kelp.cli import app
from kelp.data.folds_file import read_folds
from kelp.data.io import write_image, write_mask
from tests.conftest import make_dem, make_image

pytestmark = pytest.mark.slow
runner = CliRunner()
TinyRun = tuple[Path, dict[str, object]]


@dataclass(frozen=True)
class Case:
    """One broken input: how to make it, and what `kelp data check` names."""

    name: str
    damage: Callable[[Path, str], None]  # (dataset root, tile id) -> None
    named: str  # a piece of the one line that names the problem


def _image(root: Path, tile_id: str, split: str = "train") -> Path:
    return root / f"{split}_satellite" / f"{tile_id}_satellite.tif"


def _mask(root: Path, tile_id: str) -> Path:
    return root / "train_kelp" / f"{tile_id}_kelp.tif"


def _raw(path: Path, data: np.ndarray) -> None:
    """Write any array as a GeoTIFF, bypassing the package's checks."""
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
        count=data.shape[0], dtype=data.dtype,
    ) as dst:  # fmt: skip
        dst.write(data)


def _truncate(root: Path, t: str) -> None:
    path = _image(root, t)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _bands(root: Path, t: str) -> None:
    _raw(_image(root, t), np.zeros((3, 64, 64), np.int16))


def _float(root: Path, t: str) -> None:
    _raw(_image(root, t), np.full((7, 64, 64), 0.5, np.float32))


def _nan(root: Path, t: str) -> None:
    data = np.full((7, 64, 64), 100, np.float32)
    data[1, :4, :4] = np.nan
    _raw(_image(root, t), data)


def _mask_shape(root: Path, t: str) -> None:
    write_mask(_mask(root, t), np.zeros((32, 40), np.uint8))


def _mask_values(root: Path, t: str) -> None:
    _raw(_mask(root, t), np.full((1, 64, 64), 2, np.uint8))


def _duplicate(root: Path, t: str) -> None:
    shutil.copy(_image(root, t), _image(root, t, "test"))
    _add_metadata_row(root, t, f"{t}_satellite.tif", in_train=False)


def _ghost(root: Path, t: str) -> None:
    _add_metadata_row(root, "GHOST001", "GHOST001_satellite.tif", in_train=True)


def _add_metadata_row(root: Path, tile_id: str, filename: str, in_train: bool) -> None:
    path = next(root.glob("metadata*.csv"))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    row = dict(rows[0]) | {"tile_id": tile_id, "filename": filename, "type": "satellite"}
    row["in_train"] = str(in_train)
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(rows[0])).writerow(row)


TRAIN_CASES = [
    Case("truncated image", _truncate, "_satellite.tif"),
    Case("zero-byte image", lambda r, t: _image(r, t).write_bytes(b""), "_satellite.tif"),
    Case("not a TIFF", lambda r, t: _image(r, t).write_bytes(b"hello, world"), "_satellite.tif"),
    Case("wrong band count", _bands, "band"),
    Case("float image", _float, "_satellite.tif"),
    Case("NaN image", _nan, "_satellite.tif"),
    Case("mask of another shape", _mask_shape, "_kelp.tif"),
    Case("mask values not 0/1", _mask_values, "_kelp.tif"),
    Case("image without mask", lambda r, t: _mask(r, t).unlink(), "mask"),
    Case("mask without image", lambda r, t: _image(r, t).unlink(), "_satellite.tif"),
    Case("duplicate id across train and test", _duplicate, "duplicate tile id"),
    Case("metadata naming a missing file", _ghost, "GHOST001"),
]


def _no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, result.output
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)


def _copy_run_data(tiny_run: TinyRun, tmp_path: Path) -> tuple[Path, Path]:
    run = Path(str(tiny_run[1]["run_dir"]))
    data = tmp_path / "data"
    shutil.copytree(run / "data", data)
    return run, data


@pytest.mark.parametrize("case", TRAIN_CASES, ids=lambda c: c.name)
def test_bad_train_tile(case: Case, tiny_run: TinyRun, tmp_path: Path) -> None:
    run, data = _copy_run_data(tiny_run, tmp_path)
    folds = read_folds(run / "folds.csv")
    victim = folds.tile_ids[0]
    n_train = len(folds.tile_ids)
    case.damage(data, victim)

    check = runner.invoke(app, ["data", "check", str(data), "--out", str(tmp_path / "s.csv")])
    _no_traceback(check)
    assert check.exit_code == 1, check.output
    named = [line for line in check.output.splitlines() if "problem:" in line]
    assert any(case.named.lower() in line.lower() for line in named), check.output

    out = tmp_path / "features"
    build = runner.invoke(app, [
        "-q", "build-features", str(data), "--folds", str(run / "folds.csv"), "--out", str(out),
        "--on-error", "skip", "--config", str(tiny_run[0]),
    ])  # fmt: skip
    _no_traceback(build)
    assert build.exit_code == 0, build.output
    manifest = json.loads((out / "manifest.json").read_text())
    done = set(manifest["tiles"])
    skipped = {s["tile_id"] for s in manifest["skipped"]}
    assert done | skipped >= set(folds.tile_ids) - {victim}  # every good tile processed
    assert len(done) >= n_train - 1


@pytest.mark.parametrize("case", TRAIN_CASES[:3] + TRAIN_CASES[8:10], ids=lambda c: c.name)
def test_kelp_run_leaves_bad_train_tiles_out(case: Case, tiny_run: TinyRun, tmp_path: Path) -> None:
    run, data = _copy_run_data(tiny_run, tmp_path)
    victim = read_folds(run / "folds.csv").tile_ids[0]
    case.damage(data, victim)
    config = tmp_path / "run.toml"
    text = tiny_run[0].read_text().replace("[data.synth]", f'[data]\npath = "{data}"\n[x]', 1)
    # drop the synth table's keys with it: keep the rest of the tiny config
    lines, skipping = [], False
    for line in text.splitlines():
        if line == "[x]":
            skipping = True
            continue
        if skipping and line.startswith("["):
            skipping = False
        if not skipping:
            lines.append(line)
    config.write_text("\n".join(lines).replace(str(run.parent), str(tmp_path / "runs")) + "\n")
    # the data stages for every case; every stage (trees, CNN, stack, predict) for one
    whole = case.name == "truncated image"
    for only in ([] if whole else ["--only", "folds"], [] if whole else ["--only", "features"]):
        result = runner.invoke(app, ["-q", "run", str(config), *only])
        _no_traceback(result)
        assert result.exit_code == 0, result.output
    new = tmp_path / "runs" / "tiny"
    assignment = read_folds(new / "folds.csv")
    assert victim not in assignment.tile_ids
    assert victim in dict(assignment.skipped)
    features = json.loads((new / "features" / "manifest.json").read_text())
    assert victim not in features["tiles"] and len(features["tiles"]) == len(assignment.tile_ids)
    if whole:
        record = json.loads((new / "run.json").read_text())
        assert {s["status"] for s in record["stages"].values()} == {"done"}
        predictions = json.loads((new / "predictions" / "manifest.json").read_text())
        assert predictions["skipped"] == [] and predictions["n_tiles"] > 0


def _odd(shape: tuple[int, int]) -> Callable[[Path, str], None]:
    def damage(root: Path, t: str) -> None:
        rng = np.random.default_rng(1)
        dem = make_dem(rng, max(shape))[: shape[0], : shape[1]]
        write_image(_image(root, t, "test"), make_image(rng, dem))

    return damage


def _all_missing(root: Path, t: str) -> None:
    write_image(_image(root, t, "test"), np.full((7, 64, 64), -32768, np.int32))


PREDICT_CASES = [
    ("all-missing tile", _all_missing, 0),
    ("1xN tile", _odd((1, 40)), 0),
    ("tile smaller than the largest sigma", _odd((2, 2)), 0),
    ("odd size 37x53", _odd((37, 53)), 0),
    ("truncated test image", lambda r, t: _truncate_test(r, t), 1),
    ("zero-byte test image", lambda r, t: _image(r, t, "test").write_bytes(b""), 1),
]


def _truncate_test(root: Path, t: str) -> None:
    path = _image(root, t, "test")
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    ("name", "damage", "status"), PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES]
)
def test_bad_test_tile(
    name: str, damage: Callable[[Path, str], None], status: int, tiny_run: TinyRun,
    tmp_path: Path,
) -> None:  # fmt: skip
    run, data = _copy_run_data(tiny_run, tmp_path)
    tests = sorted(p.name.split("_")[0] for p in (data / "test_satellite").iterdir())
    victim = tests[0]
    damage(data, victim)
    out = tmp_path / "masks"
    result = runner.invoke(app, [
        "-q", "predict", "--data", str(data), "--run", str(run), "--out", str(out),
        "--on-error", "skip", "--device", "cpu",
    ])  # fmt: skip
    _no_traceback(result)
    assert result.exit_code == status, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    masks = {p.name.split("_")[0] for p in out.glob("*_kelp.tif")}
    assert masks >= set(tests) - {victim}  # every good tile has its mask
    if status == 0:  # readable: a mask of its shape, all zero if it could not be predicted
        assert victim in masks
        with rasterio.open(out / f"{victim}_kelp.tif") as src:
            with rasterio.open(_image(data, victim, "test")) as image:
                assert src.shape == image.shape
            if victim in manifest["empty_masks"]:
                assert not src.read(1).any()
    else:  # unreadable: named, left out, and the exit status says so
        assert victim not in masks
        assert victim in {s["tile_id"] for s in manifest["skipped"]}
        assert "missing from" in result.output and victim in result.output


def _zero(path: Path) -> None:
    path.write_bytes(b"")


def test_damaged_artifacts_are_named(tiny_run: TinyRun, tmp_path: Path) -> None:
    """Corrupt folds, maps, meta-model and tree models: one line naming the file each."""
    source = Path(str(tiny_run[1]["run_dir"]))
    data = source / "data"

    def fresh(name: str) -> Path:
        run = tmp_path / name
        shutil.copytree(source, run, ignore=shutil.ignore_patterns("data"))
        return run

    cases: list[tuple[str, Callable[[Path], Path], list[str]]] = [
        ("zero-byte OOF map", lambda r: next((r / "oof" / "lightgbm").glob("*.npy")),
         ["stack", str(data), "--run", "{run}", "--force"]),
        ("zero-byte meta-model", lambda r: r / "stacking" / "meta.joblib",
         ["predict", "--data", str(data), "--run", "{run}", "--out", "{run}/m"]),
        ("zero-byte tree model", lambda r: next((r / "tabular" / "lightgbm").glob("fold=0/*.txt")),
         ["predict", "--data", str(data), "--run", "{run}", "--out", "{run}/m"]),
        ("zero-byte CNN weights", lambda r: r / "cnn" / "fold=0" / "best" / "model.safetensors",
         ["predict", "--data", str(data), "--run", "{run}", "--out", "{run}/m"]),
        ("zero-byte stacking manifest", lambda r: r / "stacking" / "manifest.json",
         ["predict", "--data", str(data), "--run", "{run}", "--out", "{run}/m"]),
    ]  # fmt: skip
    for name, target, args in cases:
        run = fresh(name.replace(" ", "_"))
        victim = target(run)
        _zero(victim)
        result = runner.invoke(app, ["-q", *(a.replace("{run}", str(run)) for a in args)])
        _no_traceback(result)
        assert result.exit_code == 1, (name, result.output)
        assert victim.name in result.output, (name, result.output)

    run = fresh("folds")
    for text in ("tile_id,aoi_id,fold\nAB1,a\n", "\x00\xff\xfe garbage"):
        (run / "folds.csv").write_bytes(text.encode("latin-1"))
        result = runner.invoke(app, [
            "-q", "build-features", str(data), "--folds", str(run / "folds.csv"),
            "--out", str(run / "f"),
        ])  # fmt: skip
        _no_traceback(result)
        assert result.exit_code == 1 and "folds.csv" in result.output, result.output
