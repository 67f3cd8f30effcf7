"""CnnConfig: defaults, validation with named keys, the resume key, TOML loading."""

from importlib.resources import files
from pathlib import Path

import pytest

from kelp.cnn.config import DEFAULT_CHANNELS, CnnConfig
from kelp.config import load_config, validate_config
from kelp.errors import ConfigError
from kelp.features import FeatureConfig, channel_names


def test_defaults_are_valid_and_in_the_default_feature_stack() -> None:
    config = CnnConfig()
    assert config.channels == DEFAULT_CHANNELS
    assert set(DEFAULT_CHANNELS) <= set(channel_names(FeatureConfig()))
    assert config.encoder_weights == "none"
    assert config.pad_multiple == 32
    demo = load_config(
        Path(str(files("kelp.pipeline") / "presets" / "demo.toml")), CnnConfig, "cnn"
    )
    assert demo.pad_multiple == 16  # the `kelp demo` preset's lighter U-Net


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"learning_rate": 1e-3}, r"unknown key 'learning_rate'; valid keys: channels, arch"),
        ({"loss": "hinge"}, r"loss: unknown loss 'hinge'; valid: dice_bce, dice"),
        ({"encoder_weights": "ssl"}, r"encoder_weights"),
        ({"decoder_channels": [16, 8]}, r"one width per encoder stage"),
        ({"channels": ["nir", "nir"]}, r"listed twice"),
        ({"channels": []}, r"at least one channel"),
        ({"nan_fill": float("nan")}, r"nan_fill"),
        ({"lr": 0}, r"lr"),
        ({"epochs": 2, "warmup_epochs": 2}, r"warmup_epochs .* shorter than epochs"),
        ({"num_workers": -1}, r"num_workers"),
        ({"device": "tpu"}, r"device"),
    ],
)
def test_bad_values_name_their_key(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate_config(CnnConfig, values)


def test_training_key_ignores_the_machine_only() -> None:
    base = CnnConfig()
    assert base.training_key() == base.model_copy(update={"device": "cpu"}).training_key()
    assert base.training_key() == base.model_copy(update={"num_workers": 4}).training_key()
    assert base.training_key() != base.model_copy(update={"lr": 2e-3}).training_key()
    assert base.training_key() != base.model_copy(update={"channels": ("nir",)}).training_key()


def test_toml_cnn_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cnn]\nchannels = ["nir", "NDVI"]\nencoder = "resnet18"\nepochs = 3\n')
    config = load_config(path, CnnConfig, "cnn")
    assert config.channels == ("nir", "NDVI")
    assert config.epochs == 3
    path.write_text("[cnn]\nepoch = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        load_config(path, CnnConfig, "cnn")
