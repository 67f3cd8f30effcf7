"""`[predict]` keys: bad values named, and how fast it runs is not part of any stage key."""

from pathlib import Path

import pytest

from kelp.config import validate_config
from kelp.errors import ConfigError
from kelp.pipeline.config import RunConfig, load_run_config
from kelp.stacking.config import PredictConfig


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"batch_size": 0}, r"^\[predict\]: batch_size: .* an integer >= 1 \(got 0\)$"),
        ({"batch_size": -3}, r"batch_size: .*must be 'auto' or an integer >= 1 \(got -3\)"),
        ({"batch_size": "big"}, r"batch_size\..*Input should be 'auto' \(got 'big'\)"),
        ({"num_workers": -1}, r"num_workers: .*must be 'auto' or an integer >= 0 \(got -1\)"),
        ({"num_workers": "many"}, r"num_workers\..*Input should be 'auto' \(got 'many'\)"),
        ({"overlap": "sometimes"}, r"overlap: .*valid boolean"),
        ({"batchsize": 4}, r"unknown key 'batchsize'; valid keys: .*batch_size"),
    ],
)
def test_bad_predict_values_name_their_key(values: dict[str, object], match: str) -> None:
    assert validate_config(PredictConfig, {"batch_size": 1, "num_workers": 0}).batch_size == 1
    with pytest.raises(ConfigError, match=match):
        validate_config(PredictConfig, values, "[predict]")


def test_batch_size_zero_in_a_run_config(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[data.synth]\ntiles = 4\n[predict]\nbatch_size = 0\n")
    with pytest.raises(ConfigError, match=r"predict\.batch_size: .*'auto' or an integer >= 1"):
        load_run_config(path)


def test_speed_settings_are_not_part_of_the_predict_key() -> None:
    fast = PredictConfig(batch_size=16, num_workers=3, overlap=False)
    assert RunConfig(predict=fast).section("predict") == RunConfig().section("predict")
    assert RunConfig(predict=PredictConfig(tta=True)).section("predict") != RunConfig().section(
        "predict"
    )
