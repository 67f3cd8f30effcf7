"""run_baselines end to end on tiny tiles: nested scoring, leakage, resume, determinism."""

import functools
import json
import operator
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kelp.baselines.run as run_module
import kelp.baselines.tiles as tiles_module
from kelp.baselines import FirstPlace, NdviRule, SecondPlace, run_baselines
from kelp.baselines.__main__ import main
from kelp.data.folds import FoldAssignment
from kelp.data.folds_file import write_folds
from kelp.errors import ConfigError, InputError
from kelp.oof_report import nested_entry
from kelp.thresholds import ThresholdCounts
from tests.baselines.conftest import FAST, Synth

NAMES = ("ndvi", "first_place", "second_place")
FirstRun = tuple[Path, dict[str, Any]]


def numbers(result: dict[str, Any]) -> dict[str, Any]:
    """Everything but the timings."""
    out = {}
    for name, entry in result["baselines"].items():
        per_fold = {
            k: {f: v for f, v in e.items() if f != "seconds"} for k, e in entry["per_fold"].items()
        }
        out[name] = {**{k: v for k, v in entry.items() if k != "seconds"}, "per_fold": per_fold}
    return out


@pytest.fixture(scope="module")
def first_run(synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    out = tmp_path_factory.mktemp("first")
    return out, run_baselines(synth.data, synth.folds_csv, out, NAMES, **FAST)


def fold_counts(out: Path, name: str) -> dict[int, ThresholdCounts]:
    counts = {}
    for path in sorted((out / name).glob("fold=*/fold.json")):
        record = json.loads(path.read_text())
        counts[record["fold"]] = ThresholdCounts.from_dict(record["counts"])
    return counts


def test_writes_the_summary_of_every_baseline(first_run: FirstRun, synth: Synth) -> None:
    out, result = first_run
    assert json.loads((out / "baselines.json").read_text()) == result
    for name in NAMES:
        entry = result["baselines"][name]
        assert set(entry["per_fold"]) == {"0", "1", "2"}
        assert 0 < entry["oof_nested"] <= 1
        assert entry["oof_nested"] <= entry["oof_in_sample"]
        assert entry["test"] is not None
        assert entry["test_tiles"] > 0
        for k in range(3):
            assert (out / name / f"fold={k}" / "test.npz").is_file()
    assert result["baselines"]["ndvi"]["rounds"] is None
    assert all(r >= 1 for r in result["baselines"]["second_place"]["rounds"].values())


def test_nested_scoring_never_chooses_on_the_scored_fold(first_run: FirstRun) -> None:
    out, result = first_run
    for name in NAMES:
        by_fold = fold_counts(out, name)
        entry = result["baselines"][name]
        assert entry["oof_nested"] == nested_entry(by_fold)["dice"]
        pooled = None
        for k, counts in by_fold.items():
            others = functools.reduce(operator.add, [c for f, c in by_fold.items() if f != k])
            threshold = others.best()[0]
            assert entry["per_fold"][str(k)]["nested_threshold"] == threshold
            pooled = counts.at(threshold) if pooled is None else pooled + counts.at(threshold)
        assert pooled is not None
        assert entry["oof_nested"] == pooled.dice
        threshold, best = functools.reduce(operator.add, by_fold.values()).best()
        assert (entry["threshold"], entry["oof_in_sample"]) == (threshold, best.dice)


def test_fits_and_early_stops_on_training_folds_only_and_is_deterministic(
    first_run: FirstRun, synth: Synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, Any]] = []
    load, run_fold, read_mask = tiles_module.load_tile, run_module._run_fold, run_module.read_mask

    def logged_load(record: Any, *args: Any) -> Any:
        events.append(("read", record.tile_id))
        return load(record, *args)

    def logged_mask(path: Path) -> Any:
        events.append(("read", Path(path).name.removesuffix("_kelp.tif")))
        return read_mask(path)

    def logged_fold(model: Any, key: str, folder: Path, fold: int, *args: Any) -> Any:
        events.append(("fold", (fold, model.needs_fit)))
        return run_fold(model, key, folder, fold, *args)

    for cls in (FirstPlace, SecondPlace):
        fit = cls.fit

        def logged_fit(self: Any, tiles: Any, stop_tiles: Any = (), _fit: Any = fit) -> Any:
            events.append(("stop", set(stop_tiles.tile_ids)))
            events.append(("fit", None))
            done = _fit(self, tiles, stop_tiles)
            events.append(("fitted", None))
            return done

        monkeypatch.setattr(cls, "fit", logged_fit)
    monkeypatch.setattr(tiles_module, "load_tile", logged_load)
    monkeypatch.setattr(run_module, "read_mask", logged_mask)
    monkeypatch.setattr(run_module, "_run_fold", logged_fold)
    result = run_baselines(synth.data, synth.folds_csv, tmp_path, NAMES, **FAST)

    fold, fitting, stop_sets = None, False, []
    for kind, value in events:
        if kind == "fold":
            fold, fitting = value  # until the model is fitted, fold k is not read
        elif kind == "stop":
            stop_sets.append(value)
            assert not value & set(synth.folds.tiles_in(fold))
        elif kind == "fitted":
            fitting = False
        elif kind == "read" and fitting and value in synth.folds.tile_ids:
            assert synth.folds.fold_of(value) != fold, f"fold {fold} read {value} before its fit"
    assert any(stop_sets), "no fold early-stopped: the test would prove nothing"
    assert numbers(result) == numbers(first_run[1])


def test_resume_skips_finished_folds(
    first_run: FirstRun, synth: Synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    (out / "baselines.json").unlink()
    redo = out / "second_place" / "fold=1" / "fold.json"
    redo.unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("fold.json")}
    fitted: list[str] = []
    for cls in (FirstPlace, SecondPlace, NdviRule):

        def counting(self: Any, tiles: Any, stop_tiles: Any = (), _fit: Any = cls.fit) -> Any:
            fitted.append(self.name)
            return _fit(self, tiles, stop_tiles)

        monkeypatch.setattr(cls, "fit", counting)
    result = run_baselines(synth.data, synth.folds_csv, out, NAMES, **FAST)
    assert fitted == ["second_place"]  # only the missing (baseline, fold)
    assert numbers(result) == numbers(first_run[1])
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    fitted.clear()
    assert numbers(run_baselines(synth.data, synth.folds_csv, out, NAMES, **FAST)) == numbers(
        result
    )
    assert fitted == []


def test_without_test_truth_the_test_figure_is_null(
    tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    data = tiny_dataset(n_areas=4, dates=2)
    tile_ids = sorted(
        p.name.removesuffix("_satellite.tif") for p in (data / "train_satellite").iterdir()
    )
    folds = tuple(int(t[1:3]) % 2 for t in tile_ids)  # area number -> fold
    assignment = FoldAssignment(tuple(tile_ids), tuple(t[:3] for t in tile_ids), np.array(folds))
    folds_csv = write_folds(assignment, tmp_path / "folds.csv")
    result = run_baselines(data, folds_csv, tmp_path / "out", ["ndvi"], **FAST)
    assert result["baselines"]["ndvi"]["test"] is None
    assert result["baselines"]["ndvi"]["test_tiles"] == 0


def test_a_folds_file_of_another_dataset_is_refused_naming_it_and_its_tiles(
    synth: Synth, tmp_path: Path
) -> None:
    other = FoldAssignment(
        (*synth.folds.tile_ids[:-1], "ZZ000000"),
        (*synth.folds.aoi_ids[:-1], "nowhere"),
        synth.folds.folds,
    )
    folds_csv = write_folds(other, tmp_path / "other_folds.csv")
    with pytest.raises(InputError) as caught:
        run_baselines(synth.data, folds_csv, tmp_path / "out", ["ndvi"], **FAST)
    message = str(caught.value)  # the stages' own check (kelp.data.folds_file.check_folds)
    assert str(folds_csv) in message
    assert "ZZ000000" in message and "without a fold" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("names", "error", "match"),
    [
        (["ndvi", "secnd_place"], ConfigError, "unknown baseline 'secnd_place'"),
    ],
)
def test_bad_names(
    synth: Synth, tmp_path: Path, names: list[str], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        run_baselines(synth.data, synth.folds_csv, tmp_path, names, **FAST)


def test_command_line_prints_a_table_or_one_error_line(
    first_run: FirstRun, synth: Synth, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = first_run[0]
    args = [str(synth.data), str(synth.folds_csv), str(out), "--max-rows", "20000", "--n-jobs", "1"]
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["baseline", "oof", "nested"]
    assert [line.split()[0] for line in table[1:]] == list(NAMES)
    assert main([str(synth.data), str(tmp_path / "missing.csv"), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing.csv" in err and "\n" not in err
