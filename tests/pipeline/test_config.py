"""The run config: keys moved since v0.1 are refused with their new place."""

from pathlib import Path

import pytest

from kelp.data.config import DataConfig
from kelp.errors import ConfigError
from kelp.pipeline.config import RunConfig, load_run_config


def test_top_level_workers_names_its_new_place(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text('name = "x"\nworkers = 2\n[data.synth]\ntiles = 4\n')
    with pytest.raises(ConfigError, match=r"'workers' is now \[features\] workers"):
        load_run_config(path)


def test_workers_and_seed_live_with_the_feature_build(tmp_path: Path) -> None:
    path = tmp_path / "new.toml"
    path.write_text("[features]\nworkers = 3\n[features.sampling]\nseed = 7\n[data.synth]\n")
    config = load_run_config(path)
    assert config.features.workers == 3 and config.features.sampling.seed == 7
    # how the build runs is not part of what it makes: no stage key changes with workers
    assert config.section("features") == RunConfig(
        features=config.features.model_copy(update={"workers": 1})
    ).section("features")
    assert (
        config.features.table_hash()
        == config.features.model_copy(update={"workers": 1, "on_error": "skip"}).table_hash()
    )


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        load_run_config(tmp_path / "nope.toml")


def test_layout_reads_the_configured_dataset(tmp_path: Path) -> None:
    order = ["nir", "swir", "red", "green", "blue", "qa", "dem"]
    config = RunConfig(
        runs_dir=tmp_path, name="r", data=DataConfig(path=tmp_path / "d", band_order=tuple(order))
    )
    layout = config.layout()
    assert layout.root == tmp_path / "r" and layout.data == tmp_path / "d"
    assert list(layout.band_order) == order
