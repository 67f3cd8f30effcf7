import json
from pathlib import Path

import numpy as np
import pytest

from kelp.data.catalog import open_catalog
from kelp.data.folds_file import read_folds
from kelp.data.tile import load_tile
from kelp.errors import StaleInputError
from kelp.features.channels import land_mask
from kelp.layout import RunLayout, file_sha256
from kelp.maps import MapStore
from kelp.metrics import Counts
from kelp.stacking import stack as stack_module
from kelp.stacking.config import PostprocessConfig, StackConfig
from kelp.stacking.inputs import open_base_maps
from kelp.stacking.postprocess import SWEEP_COLUMNS, Decision

FAST = StackConfig(
    postprocess=PostprocessConfig(coarse_step=0.1, fine_step=0.05, min_areas=(0, 4)),
    lightgbm={"n_estimators": 30, "num_leaves": 7, "verbose": -1},
)


def test_stack_beats_its_best_input_and_writes_everything(oof_run: tuple[Path, Path]) -> None:
    data, run = oof_run
    manifest = stack_module.stack(FAST, RunLayout.of(run, data))
    comparison = manifest["comparison"]
    best_base = max(comparison[m]["dice_at_best"] for m in ("cnn", "xgboost"))
    for meta in ("logistic", "average", "lightgbm"):
        assert comparison[f"stack-{meta}"]["dice_at_best"] > best_base + 0.1
    assert set(comparison) == {
        "cnn", "xgboost", "mean-logit", "stack-average", "stack-logistic", "stack-lightgbm",
    }  # fmt: skip
    assert set(comparison["cnn"]["per_fold_dice_at_0.5"]) == {"0", "1", "2"}
    out = run / "stacking"
    for name in ("comparison.json", "comparison.csv", "sweep.csv", "decision.json",
                 "meta.joblib", "meta.json", "manifest.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert MapStore(out / "oof").tile_ids() == sorted(_folds(data, run).tile_ids)
    header = (out / "sweep.csv").read_text().splitlines()[0].split(",")
    assert header == list(SWEEP_COLUMNS)
    dice = [float(line.split(",")[4]) for line in (out / "sweep.csv").read_text().splitlines()[1:]]
    assert dice == sorted(dice, reverse=True)
    decision = json.loads((out / "decision.json").read_text())
    assert decision["metric"] == "global_dice"
    assert decision["in_sample"]["dice"] == pytest.approx(dice[0], abs=1e-6)
    assert decision["dice"] == decision["nested"]["dice"] <= decision["in_sample"]["dice"]
    assert manifest["meta"]["models"] == ["cnn", "xgboost"]  # the CNN first
    assert manifest["base_keys"] == {"cnn": "cnn-key", "xgboost": "xgboost-key"}


def test_nested_figures_score_each_fold_with_a_choice_made_on_the_others(
    oof_run: tuple[Path, Path],
) -> None:
    data, run = oof_run
    config = FAST.model_copy(update={"compare": ("logistic",)})
    manifest = stack_module.stack(config, RunLayout.of(run, data))
    folds = _folds(data, run)
    catalog = {r.tile_id: r for r in open_catalog(data).train}
    fused = MapStore(run / "stacking" / "oof")
    by_fold: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for tile_id, fold in zip(folds.tile_ids, folds.folds.tolist()):
        tile = load_tile(catalog[tile_id])
        assert tile.mask is not None
        by_fold.setdefault(fold, []).append((fused.read(tile_id), tile.mask, land_mask(tile)))

    def dice(decision: Decision, tiles: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
        total = sum(
            (Counts.from_arrays(decision.apply(p, land), truth) for p, truth, land in tiles),
            Counts(0, 0, 0, 0),
        )
        return total.dice

    record = manifest["decision"]
    pooled = Counts(0, 0, 0, 0)
    for fold, entry in record["nested"]["per_fold"].items():
        chosen = Decision(entry["threshold"], entry["land_mask"], entry["min_area"],
                          entry["morphology"])  # fmt: skip
        others = [t for f, tiles in by_fold.items() if f != int(fold) for t in tiles]
        # the fold's decision is the best one on the other folds' tiles, over the final grid
        for threshold in (0.1, 0.3, 0.5, 0.7, 0.9):
            for area in (0, 4):
                rival = Decision(threshold, False, area)
                assert dice(chosen, others) >= dice(rival, others) - 1e-9
        assert entry["dice"] == pytest.approx(dice(chosen, by_fold[int(fold)]), abs=1e-6)
        for p, truth, land in by_fold[int(fold)]:
            pooled = pooled + Counts.from_arrays(chosen.apply(p, land), truth)
    assert record["dice"] == pytest.approx(pooled.dice, abs=1e-6)

    report = json.loads((run / "stacking" / "comparison.json").read_text())
    for name, model in report["models"].items():
        assert set(model["nested"]["thresholds"]) == {"0", "1", "2"}
        assert model["nested"]["dice"] <= model["overall"]["best"]["dice"] + 1e-12
        assert manifest["comparison"][name]["dice_nested"] == model["nested"]["dice"]


def test_meta_outside_compare_is_cross_validated_too(oof_run: tuple[Path, Path]) -> None:
    data, run = oof_run
    config = FAST.model_copy(update={"compare": ("average",)})
    config = StackConfig.model_validate({**config.model_dump(), "meta": "logistic"})
    assert config.compare == ("average", "logistic")
    manifest = stack_module.stack(config, RunLayout.of(run, data))
    assert {"stack-average", "stack-logistic"} <= set(manifest["comparison"])
    assert MapStore(run / "stacking" / "oof").manifest()["model"] == "stack-logistic"


def test_stale_fused_maps_are_cleared(oof_run: tuple[Path, Path]) -> None:
    data, run = oof_run
    stale = MapStore(run / "stacking" / "oof")
    stale.write("ZZ000000", np.zeros((4, 4)), "probability")
    stale.write_manifest({"kind": "probability", "model": "stack-lightgbm", "key": "old"})
    stack_module.stack(FAST.model_copy(update={"compare": ("logistic",)}), RunLayout.of(run, data))
    assert not stale.has("ZZ000000")
    assert stale.tile_ids() == sorted(_folds(data, run).tile_ids)


def test_rerun_is_a_no_op_and_force_redoes(
    oof_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run = oof_run
    cfg = FAST.model_copy(update={"compare": ("logistic",)})
    first = stack_module.stack(cfg, RunLayout.of(run, data))
    calls = []
    real = stack_module._fit
    monkeypatch.setattr(stack_module, "_fit", lambda *a: calls.append(a) or real(*a))
    assert stack_module.stack(cfg, RunLayout.of(run, data)) == first
    assert calls == []
    stack_module.stack(cfg, RunLayout.of(run, data), force=True)
    assert len(calls) == 3 + 1  # one per fold, then the final fit


def test_meta_model_of_fold_k_never_fits_fold_k(
    oof_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, run = oof_run
    seen: list[set[int]] = []
    real = stack_module._fit

    def spy(name, rows, config):  # type: ignore[no-untyped-def]
        seen.append({r.fold for r in rows})
        return real(name, rows, config)

    monkeypatch.setattr(stack_module, "_fit", spy)
    stack_module.stack(FAST.model_copy(update={"compare": ("logistic",)}), RunLayout.of(run, data))
    assert seen[:3] == [{1, 2}, {0, 2}, {0, 1}]  # fold k scored by a model fit without it
    assert seen[3] == {0, 1, 2}  # the final model uses every out-of-fold pixel


def _folds(data: Path, run: Path):  # type: ignore[no-untyped-def]
    return read_folds(run / "folds.csv", open_catalog(data))


def _edit_manifest(store: Path, **changes: object) -> None:
    path = store / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_base_maps_validation(oof_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = oof_run
    folds = _folds(data, run)
    base = open_base_maps(RunLayout.of(run), folds)
    assert base.names == ("cnn", "xgboost")
    assert base.folds_sha256 == file_sha256(run / "folds.csv")
    assert base.logits(folds.tile_ids[0]).shape == (2, 48, 48)

    with pytest.raises(StaleInputError, match="run `kelp train-trees` and/or `kelp train-cnn`"):
        open_base_maps(RunLayout.of(tmp_path, folds=run / "folds.csv"), folds)
    with pytest.raises(StaleInputError, match="lightgbm.*kelp train-trees --models lightgbm"):
        open_base_maps(RunLayout.of(run), folds, ("lightgbm",))

    store = run / "oof" / "xgboost"
    (store / f"{folds.tile_ids[3]}.npy").unlink()
    with pytest.raises(StaleInputError, match=r"1 train tile\(s\) have no out-of-fold map"):
        open_base_maps(RunLayout.of(run), folds)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"folds_sha256": "0" * 64}, "another folds file.*kelp train-cnn"),
        ({"stack_hash": "other"}, "different feature configs"),
        ({"kind": "probability"}, "hold probability values from an older kelp.*kelp train-cnn"),
    ],
)
def test_base_models_from_other_folds_or_features(
    oof_run: tuple[Path, Path], change: dict[str, str], match: str
) -> None:
    data, run = oof_run
    _edit_manifest(run / "oof" / "cnn", **change)
    with pytest.raises(StaleInputError, match=match):
        open_base_maps(RunLayout.of(run), _folds(data, run))


def test_a_tile_predicted_by_a_model_that_trained_on_it(oof_run: tuple[Path, Path]) -> None:
    data, run = oof_run
    folds = _folds(data, run)
    manifest = json.loads((run / "oof" / "cnn" / "manifest.json").read_text())
    tile = folds.tile_ids[0]
    manifest["folds"][tile] = (manifest["folds"][tile] + 1) % 3
    (run / "oof" / "cnn" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StaleInputError, match="predicted by another fold's model"):
        open_base_maps(RunLayout.of(run), folds)


def test_no_kelp_to_fit(oof_run: tuple[Path, Path]) -> None:
    data, run = oof_run
    from kelp.data.io import write_mask

    for record in open_catalog(data).train:
        assert record.mask is not None
        write_mask(record.mask, np.zeros((48, 48), np.uint8))
    with pytest.raises(ValueError, match="no kelp pixel"):
        stack_module.stack(FAST, RunLayout.of(run, data))


def test_meta_best_chooses_by_post_processed_masks_on_the_other_folds(
    oof_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kelp.stacking.choice import Choice

    data, run = oof_run
    config = StackConfig.model_validate({**FAST.model_dump(), "meta": "best"})
    assert config.compare == ("average", "logistic", "lightgbm")  # best adds nothing
    folds = _folds(data, run)
    fold_of = dict(zip(folds.tile_ids, folds.folds.tolist(), strict=True))
    catalog = {r.tile_id: r for r in open_catalog(data).train}
    choices: dict[str, Choice] = {}
    choose = stack_module.choose

    def spy(store: MapStore, *args: object, **kwargs: object) -> Choice:
        choice = choose(store, *args, **kwargs)  # type: ignore[arg-type]
        meta = store.root.name.removeprefix("oof-")
        choices[meta] = choice
        for fold, (decision, _) in choice.per_fold.items():  # read before the maps go
            inner = Counts(0, 0, 0, 0)
            for tile_id, f in fold_of.items():
                tile = load_tile(catalog[tile_id])
                assert tile.mask is not None
                got = Counts.from_arrays(decision.apply(store.read(tile_id), land_mask(tile)),
                                         tile.mask)  # fmt: skip
                inner = inner + got if f != fold else inner
            assert choice.inner[fold] == inner, (meta, fold)  # pooled over the other folds
        return choice

    monkeypatch.setattr(stack_module, "choose", spy)
    manifest = stack_module.stack(config, RunLayout.of(run, data))
    assert sorted(choices) == sorted(config.compare)
    nested_choice = manifest["meta"]["nested_choice"]
    for fold in range(3):
        inner = {m: choices[m].inner[fold].dice for m in config.compare}
        assert inner[nested_choice[str(fold)]] == max(inner.values())
    final = manifest["meta"]["meta"]
    assert choices[final].counts.dice == max(c.counts.dice for c in choices.values())
    record = manifest["decision"]
    assert record["threshold"] == choices[final].decision.threshold
    nested = Counts(0, 0, 0, 0)
    for fold, name in nested_choice.items():
        decision, counts = choices[name].per_fold[int(fold)]
        assert record["nested"]["per_fold"][fold]["threshold"] == decision.threshold
        nested = nested + counts
    assert record["nested"]["dice"] == pytest.approx(nested.dice, abs=1e-6)
    assert "stack-best" in manifest["comparison"]
    out = run / "stacking"  # only the final meta-model's maps stay, with its sweep
    assert MapStore(out / "oof").manifest()["model"] == f"stack-{final}"
    assert sorted(MapStore(out / "oof").tile_ids()) == sorted(fold_of)
    assert not [*out.glob("oof-*"), *out.glob("sweep-*.csv")]
    assert (out / "sweep.csv").is_file()


def test_meta_choice_never_looks_at_the_scored_fold() -> None:
    from kelp.stacking.choice import Choice, choose_meta
    from kelp.stacking.postprocess import Sweep

    decision = Decision(0.5)
    good, poor = Counts(tp=10, fp=0, fn=0, tn=90), Counts(tp=5, fp=5, fn=5, tn=85)

    def choice(own: dict[int, Counts], inner: dict[int, Counts], overall: Counts) -> Choice:
        per_fold = {f: (decision, c) for f, c in own.items()}
        return Choice(decision, overall, poor, per_fold, inner, Sweep([], PostprocessConfig()))

    # average is perfect on fold 0 itself, but on the folds other than 0 logistic is better
    choices = {
        "average": choice({0: good, 1: poor, 2: poor}, {0: poor, 1: good, 2: good}, poor),
        "logistic": choice({0: poor, 1: good, 2: good}, {0: good, 1: good, 2: good}, good),
    }
    final, per_fold, combined = choose_meta(choices, ("average", "logistic"))
    assert per_fold[0] == "logistic"
    assert per_fold[1] == per_fold[2] == "average"  # a tie on the other folds: the first listed
    assert final == "logistic"
    assert combined.decision == decision and combined.counts == good
    assert combined.nested == poor + poor + poor  # each fold under the meta chosen for it
