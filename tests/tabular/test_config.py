"""The typed config and the model registry's helpful misses."""

from pathlib import Path

import pytest

from kelp.config import load_config, validate_config
from kelp.errors import ConfigError
from kelp.tabular.config import MODEL_NAMES, TabularConfig
from kelp.tabular.registry import create_model, model_class, parse_models

VALID = "lightgbm, xgboost, catboost, random_forest"


def test_defaults() -> None:
    config = TabularConfig()
    assert config.models == MODEL_NAMES
    assert config.device == "auto"
    assert not config.sample_weight
    assert config.early_stopping_rounds > 0
    assert config.n_jobs is None


def test_toml_fills_the_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[tabular]\nmodels = ["xgboost"]\nmax_rounds = 7\n[tabular.params.xgboost]\nmax_depth = 4\n'
    )
    config = load_config(path, TabularConfig, "tabular")
    assert config.models == ("xgboost",)
    assert config.max_rounds == 7
    assert config.params == {"xgboost": {"max_depth": 4}}


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"rounds": 3}, "unknown key 'rounds'; valid keys: models, device"),
        ({"models": ["lgbm"]}, rf"models.0: unknown model 'lgbm'; did you mean .* valid: {VALID}"),
        ({"models": ["xgboost", "xgboost"]}, "listed twice"),
        ({"models": []}, "at least one model"),
        ({"device": "gpu"}, "device.*'auto', 'cpu' or 'cuda'"),
        ({"params": {"lgbm": {}}}, "params.lgbm"),
        ({"stop_fraction": 0.9}, "stop_fraction"),
        ({"max_rounds": 0}, "max_rounds"),
    ],
)
def test_bad_config_names_the_key(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate_config(TabularConfig, values)


def test_parse_models() -> None:
    assert parse_models("all") == MODEL_NAMES
    assert parse_models("xgboost, lightgbm,xgboost") == ("xgboost", "lightgbm")


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_models("lightgbm,lgbm"),
        lambda: parse_models(" , "),
        lambda: create_model("forest"),
        lambda: model_class("svm"),
    ],
)
def test_unknown_model_lists_the_valid_ones(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=f"valid: {VALID}"):
        call()


@pytest.mark.parametrize("value", [0, -5])
def test_row_cap_must_be_positive(value: int) -> None:
    from kelp.pipeline.config import RunConfig

    with pytest.raises(ConfigError, match=r"tabular\.max_rows"):
        validate_config(RunConfig, {"tabular": {"max_rows": value}})
