"""The error kinds users meet, and the one "unknown name" message."""

import pytest

from kelp.errors import (
    ConfigError,
    DatasetError,
    DeviceError,
    InputError,
    KelpError,
    StaleInputError,
    TileError,
    TrainingDivergedError,
    WeightsUnavailableError,
    unknown_name,
)


@pytest.mark.parametrize(
    ("kind", "also"),
    [
        (InputError, ValueError),
        (StaleInputError, InputError),
        (ConfigError, ValueError),
        (DeviceError, ValueError),
        (TrainingDivergedError, ValueError),
        (WeightsUnavailableError, OSError),
    ],
)
def test_every_kind_is_a_kelp_error_and_keeps_its_v01_base(
    kind: type[Exception], also: type[Exception]
) -> None:
    assert issubclass(kind, KelpError) and issubclass(kind, also)


def test_tile_error_names_the_file() -> None:
    error = TileError("tiles/a.tif", "truncated")
    assert str(error) == "tiles/a.tif: truncated" and error.problem == "truncated"
    assert isinstance(error, InputError)


def test_dataset_error_lists_twenty_problems_then_counts() -> None:
    error = DatasetError([f"tile {i}: bad" for i in range(25)])
    text = str(error)
    assert text.startswith("25 problem(s) in the dataset:")
    assert "tile 19: bad" in text and "tile 20: bad" not in text
    assert text.endswith("... and 5 more") and len(error.problems) == 25


def test_unknown_name_suggests_close_names_case_blind() -> None:
    error = unknown_name("model", "XGBost", ["lightgbm", "xgboost"], extra=" (or 'all')")
    assert isinstance(error, ConfigError)
    assert str(error) == (
        "unknown model 'XGBost'; did you mean 'xgboost'? valid: lightgbm, xgboost (or 'all')"
    )


def test_unknown_name_without_a_close_name() -> None:
    assert str(unknown_name("loss", "zzz", ["dice", "bce"])) == (
        "unknown loss 'zzz'; valid: dice, bce"
    )
