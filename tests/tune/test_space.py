"""Search spaces: the catalogue, the config's overrides, and every bad form named."""

from typing import Any

import optuna
import pytest

from kelp.config import validate_config
from kelp.errors import ConfigError
from kelp.pipeline.config import RunConfig
from kelp.tabular.config import MODEL_NAMES
from kelp.tune.objective import apply_values
from kelp.tune.space import TREE_MODELS, Choice, Fixed, Range, build_space, catalogue


def test_every_tree_model_has_a_space_and_every_key_is_a_config_key() -> None:
    assert set(TREE_MODELS) == set(MODEL_NAMES)
    defaults = RunConfig().model_dump()
    for target, model in [("cnn", None), ("stack", None)] + [("trees", m) for m in MODEL_NAMES]:
        for param in catalogue(target, model):  # type: ignore[arg-type]
            *tables, last = param.key.split(".")
            table: Any = defaults
            for part in tables:
                table = table.get(part, {}) if isinstance(table, dict) else {}
            if "params" not in tables:  # library params are free-form; the rest must exist
                assert last in table, param.key


def test_defaults_and_overrides() -> None:
    space = build_space(
        "trees",
        "lightgbm",
        {
            "n_random": "off",
            "max_rounds": {"low": 100, "high": 300, "step": 100},
            "lightgbm": {"num_leaves": {"choices": [7, 15]}, "lambda_l2": 2.0},
            "xgboost": {"max_depth": {"low": 2, "high": 4}},  # another model's: not used
        },
    )
    dists = {p.name: d for p, d in space.params}
    assert "n_random" not in dists and "buffer" not in dists  # off / no default range
    assert dists["max_rounds"] == Range(100, 300, False, 100)
    assert dists["num_leaves"] == Choice((7, 15))
    assert dists["lambda_l2"] == Fixed(2.0)
    assert dists["learning_rate"] == Range(0.02, 0.3, log=True)
    assert "lambda_l2" not in space.searched and "num_leaves" in space.searched
    drawn = space.suggest(
        optuna.trial.FixedTrial(
            {"max_rounds": 200, "num_leaves": 15, "learning_rate": 0.05, "sample_weight": True,
             "min_data_in_leaf": 50, "feature_fraction": 0.5, "bagging_fraction": 0.9}
        )
    )  # fmt: skip
    assert drawn["tabular.max_rounds"] == 200
    assert drawn["tabular.params.lightgbm.num_leaves"] == 15
    assert drawn["tabular.params.lightgbm.lambda_l2"] == 2.0
    config = validate_config(RunConfig, apply_values({"name": "x"}, drawn))
    assert config.tabular.params["lightgbm"]["num_leaves"] == 15 and config.name == "x"


def test_the_forest_has_no_rounds_and_stack_params_follow_the_meta_model() -> None:
    assert "max_rounds" not in {p.name for p in catalogue("trees", "random_forest")}
    build_space("trees", "random_forest", {"max_rounds": {"low": 10, "high": 20}})  # shared: ok
    space = build_space("stack", None, {})
    average = space.suggest(optuna.trial.FixedTrial({"meta": "average"}))
    assert average == {"stacking.meta": "average"}
    params = {"meta": "lightgbm", "num_leaves": 7, "learning_rate": 0.1, "n_estimators": 60,
              "min_child_samples": 20}  # fmt: skip
    lightgbm = space.suggest(optuna.trial.FixedTrial(params))
    assert lightgbm["stacking.lightgbm.num_leaves"] == 7 and len(lightgbm) == 5
    assert space.values({"meta": "logistic"}) == {"stacking.meta": "logistic"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"lightgbm": {"num_leafs": {"low": 2, "high": 9}}},
            "unknown parameter of lightgbm in "
            r"\[tune.trees.lightgbm\] 'num_leafs'; did you mean 'num_leaves'\? valid: max_rounds",
        ),
        ({"learning_rat": {"low": 0.1, "high": 0.2}}, "did you mean 'learning_rate'"),
        ({"learning_rate": {"low": 0.3, "high": 0.1}}, r"empty or inverted range: low 0.3"),
        ({"learning_rate": {"low": 0.1, "high": 0.1}}, "empty or inverted range"),
        ({"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, "a log range needs low > 0"),
        ({"learning_rate": {"low": 0.1}}, r"a range is \{low = \.\.\., high = \.\.\.\}"),
        ({"learning_rate": {"low": "a", "high": 0.1}}, "low and high must be numbers"),
        ({"sample_weight": {"choices": []}}, "choices must be a non-empty list"),
        ({"max_rounds": {"low": 1, "high": 9, "step": 20}}, r"step must be in \(0, high - low\]"),
        ({"lightgbm": 3}, r"lightgbm must be a table"),
    ],
)
def test_bad_spaces_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_space("trees", "lightgbm", overrides)


def test_bad_cnn_and_stack_spaces_are_named() -> None:
    with pytest.raises(ConfigError, match=r"\[tune.cnn\] lr: empty or inverted range"):
        build_space("cnn", None, {"lr": {"low": 1e-2, "high": 1e-3}})
    with pytest.raises(ConfigError, match=r"unknown stack parameter in \[tune.stack\] 'metaa'"):
        build_space("stack", None, {"metaa": "average"})
    with pytest.raises(ConfigError, match="unknown tree model 'lgbm'"):
        catalogue("trees", "lgbm")
