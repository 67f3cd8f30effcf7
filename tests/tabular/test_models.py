"""One shared tester runs every registered tree model on a tiny numpy problem."""

import json
from pathlib import Path

import numpy as np
import pytest

from kelp.tabular.config import MODEL_NAMES
from kelp.tabular.registry import create_model, load_model
from tests.tabular.conftest import FAST_PARAMS

NAMES = ("a", "b", "c", "d", "e")
SUFFIX = {
    "lightgbm": "model.txt",
    "xgboost": "model.ubj",
    "catboost": "model.cbm",
    "random_forest": "model.ubj",
}


def _problem(seed: int = 0, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NAMES))).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.3, n)) > 1.2).astype(np.uint8)
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values go through natively
    return x, y, rng.uniform(0.5, 2, n).astype(np.float32)


def _model(name: str, seed: int = 0):  # type: ignore[no-untyped-def]
    return create_model(
        name, FAST_PARAMS[name], n_jobs=2, seed=seed, max_rounds=15, early_stopping_rounds=5
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fit_predict_save_load(name: str, tmp_path: Path) -> None:
    x, y, w = _problem()
    xs, ys, ws = _problem(seed=1, n=200)
    model = _model(name).fit(x, y, w, eval_set=(xs, ys, ws), feature_names=NAMES)
    proba = model.predict_proba(xs)
    assert proba.shape == (200, 2)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert ((proba >= 0) & (proba <= 1)).all()
    assert set(np.unique(model.predict(xs))) <= {0, 1}
    # a model that learned something ranks kelp rows above the rest
    p = proba[:, 1]
    assert p[ys == 1].mean() > p[ys == 0].mean() + 0.2
    importance = model.feature_importances_
    assert importance.shape == (5,)
    assert importance.sum() == pytest.approx(1)
    assert int(np.argmax(importance)) in (0, 1)
    assert 1 <= model.best_iteration_ <= 15

    folder = model.save(tmp_path / "m", inputs={"stack_hash": "abc"})
    assert (folder / SUFFIX[name]).is_file()
    info = json.loads((folder / "model.json").read_text())
    assert info["model"] == name
    assert info["feature_names"] == list(NAMES)
    assert info["inputs"] == {"stack_hash": "abc"}
    loaded = load_model(folder)
    assert type(loaded) is type(model)
    assert loaded.feature_names_in_ == NAMES
    assert loaded.inputs == {"stack_hash": "abc"}
    np.testing.assert_array_equal(loaded.predict_proba(xs), proba)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_predictions(name: str) -> None:
    x, y, w = _problem()
    xs, _, _ = _problem(seed=1, n=200)
    first = _model(name, seed=7).fit(x, y, w, feature_names=NAMES).predict_proba(xs)
    again = _model(name, seed=7).fit(x, y, w, feature_names=NAMES).predict_proba(xs)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, x, y: m.predict_proba(x), "not fitted"),
        (lambda m, x, y: m.fit(x, np.zeros_like(y)), "no positive"),
        (lambda m, x, y: m.fit(x, y * 2), "only 0"),
        (lambda m, x, y: m.fit(x, y[:-1]), "must have shape"),
        (lambda m, x, y: m.fit(x[:, 0], y), "2-D"),
        (lambda m, x, y: m.fit(x, y, feature_names=["a"]), "1 feature names for 5"),
        (lambda m, x, y: m.fit(x, y).predict_proba(x[:, :3]), "expects 5"),
    ],
)
def test_bad_calls(call, match: str) -> None:  # type: ignore[no-untyped-def]
    x, y, _ = _problem(n=300)
    with pytest.raises(ValueError, match=match):
        call(_model("xgboost"), x, y)


def test_load_refuses_other_model_and_missing_files(tmp_path: Path) -> None:
    from kelp.tabular.models.lightgbm_model import LightGBMModel

    x, y, _ = _problem(n=300)
    folder = _model("xgboost").fit(x, y).save(tmp_path / "m")
    with pytest.raises(ValueError, match="holds a xgboost model, not lightgbm"):
        LightGBMModel.load(folder)
    (folder / "model.ubj").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        load_model(folder)
    with pytest.raises(FileNotFoundError, match="kelp train-trees"):
        load_model(tmp_path / "nothing")
