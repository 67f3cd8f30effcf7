"""The registry helper, and the one "unknown X" message of every registry built on it."""

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

import pytest
from pydantic import BaseModel

from kelp.config import validate_config
from kelp.errors import ConfigError
from kelp.registry import Registry, one_of

VALID_MODELS = "lightgbm, xgboost, catboost, random_forest"


def _colours() -> Registry[int]:
    colours: Registry[int] = Registry("colour")
    colours.register("red", 1)
    colours.register("green", 2)
    colours.register("blue", 3)
    return colours


def test_register_and_get() -> None:
    colours = _colours()
    assert colours.get("green") == 2
    assert "red" in colours
    assert "RED" not in colours  # case-sensitive by default
    assert 3 not in colours
    assert len(colours) == 3


def test_decorator_form_returns_what_it_decorates() -> None:
    shapes: Registry[Callable[[], str]] = Registry("shape")

    @shapes.register("square")
    def square() -> str:
        return "4 sides"

    assert square() == "4 sides"
    assert shapes.get("square") is square


def test_names_in_registration_order() -> None:
    colours = _colours()
    colours.register("amber", 4)
    assert colours.names() == ("red", "green", "blue", "amber")
    assert list(colours) == list(colours.names())


def test_a_name_registered_twice_is_refused() -> None:
    colours = _colours()
    with pytest.raises(ValueError, match="colour 'red' is registered twice"):
        colours.register("red", 9)
    assert colours.get("red") == 1


def test_miss_with_a_close_match() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^unknown colour 'gren'; did you mean 'green'\? valid: red, green, blue$",
    ):
        _colours().get("gren")


def test_miss_without_a_close_match() -> None:
    with pytest.raises(ConfigError, match=r"^unknown colour 'purple'; valid: red, green, blue$"):
        _colours().get("purple")


def test_case_insensitive_option() -> None:
    bands: Registry[str] = Registry("band", case_sensitive=False)
    bands.register("NIR", "near infrared")
    bands.register("ClGreen", "green")
    assert bands.get("nir") == "near infrared"
    assert bands.get("CLGREEN") == "green"
    assert "Nir" in bands
    assert bands.names() == ("NIR", "ClGreen")  # as registered
    with pytest.raises(ValueError, match="registered twice"):
        bands.register("nir", "again")
    with pytest.raises(ConfigError, match="unknown band 'swir'; valid: NIR, ClGreen"):
        bands.get("swir")


def test_mapping_is_a_read_only_live_view() -> None:
    colours = _colours()
    view = colours.mapping()
    assert dict(view) == {"red": 1, "green": 2, "blue": 3}
    colours.register("amber", 4)
    assert view["amber"] == 4
    with pytest.raises(TypeError):
        view["pink"] = 5  # type: ignore[index]


class _Paint(BaseModel):
    colour: Annotated[str, one_of("colour", _colours())] = "red"
    finish: Annotated[Literal["matt", "gloss"], one_of("finish", ("matt", "gloss"))] = "matt"


def test_one_of_gives_config_errors_the_one_message() -> None:
    assert _Paint.model_validate({"colour": "blue", "finish": "gloss"}).finish == "gloss"
    with pytest.raises(ConfigError) as error:
        validate_config(_Paint, {"colour": "gren", "finish": "glos"}, where="paint.toml")
    assert str(error.value).splitlines() == [
        "paint.toml: colour: unknown colour 'gren'; did you mean 'green'? valid: red, green, "
        "blue (got 'gren')",
        "paint.toml: finish: unknown finish 'glos'; did you mean 'gloss'? valid: matt, gloss "
        "(got 'glos')",
    ]
    with pytest.raises(ConfigError, match="colour: Input should be a valid string"):
        validate_config(_Paint, {"colour": 3})


# Every registry of the package: a near miss names the close name.


def test_tree_models() -> None:
    from kelp.tabular.registry import MODELS, model_class, parse_models

    with pytest.raises(ConfigError, match="unknown model 'xgbost'; did you mean 'xgboost'"):
        model_class("xgbost")
    hint = rf"unknown model 'xgbost'; did you mean 'xgboost'\? valid: {VALID_MODELS} \(or 'all'\)$"
    with pytest.raises(ConfigError, match=hint):
        parse_models("lightgbm,xgbost")
    assert parse_models("all") == MODELS.names()


def test_tree_model_names_come_from_the_registry() -> None:
    from kelp.tabular.config import MODEL_NAMES, TabularConfig
    from kelp.tabular.registry import MODELS

    assert MODEL_NAMES == MODELS.names() == tuple(VALID_MODELS.split(", "))
    assert TabularConfig().models == MODEL_NAMES


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"models": ["lightgbm", "xgbost"]}, "models.1: unknown model 'xgbost'"),
        ({"params": {"xgbost": {}}}, r"params.xgbost.\[key\]: unknown model 'xgbost'"),
    ],
)
def test_tree_model_config_errors_name_the_key(values: dict[str, Any], line: str) -> None:
    from kelp.tabular.config import TabularConfig

    with pytest.raises(
        ConfigError,
        match=rf"^c.toml: {line}; did you mean 'xgboost'\? valid: {VALID_MODELS} \(got 'xgbost'\)$",
    ):
        validate_config(TabularConfig, values, where="c.toml")


def test_spectral_indices() -> None:
    from kelp.features.indices import INDICES, get_index

    with pytest.raises(ConfigError, match="unknown spectral index 'NDVl'; did you mean 'NDVI'"):
        get_index("NDVl")
    with pytest.raises(ConfigError, match="unknown spectral index 'ndvi2'; did you mean 'NDVI'"):
        get_index("ndvi2")
    assert get_index("ndvi") is INDICES["NDVI"]


def test_encoders() -> None:
    pytest.importorskip("segmentation_models_pytorch")
    from kelp.cnn.model import _check_encoder

    with pytest.raises(ConfigError, match="unknown encoder 'resnet19'; did you mean 'resnet18'"):
        _check_encoder("resnet19")
    with pytest.raises(ConfigError, match="unknown encoder 'tu-resnet19'; did you mean 'tu-resne"):
        _check_encoder("tu-resnet19")


def test_losses() -> None:
    pytest.importorskip("segmentation_models_pytorch")
    from kelp.cnn import config
    from kelp.cnn.losses import LOSSES, make_loss

    with pytest.raises(ConfigError, match="unknown loss 'dice_bc'; did you mean 'dice_bce'"):
        make_loss("dice_bc")  # type: ignore[arg-type]
    assert get_args(get_args(config.LossName)[0]) == LOSSES  # registry and Literal agree
    with pytest.raises(ConfigError, match="loss: unknown loss 'dice_bc'; did you mean 'dice_bce'"):
        validate_config(config.CnnConfig, {"loss": "dice_bc"})


def test_meta_models() -> None:
    from kelp.stacking.config import META_MODELS, StackConfig
    from kelp.stacking.meta import _META, create_meta

    with pytest.raises(ConfigError, match="unknown meta-model 'logistc'; did you mean 'logistic'"):
        create_meta("logistc")
    assert _META.names() == META_MODELS  # registry and Literal agree
    assert [create_meta(name).name for name in META_MODELS] == list(META_MODELS)
    with pytest.raises(
        ConfigError, match=r"compare.1: unknown meta-model 'logistc'; did you mean 'logistic'\?"
    ):
        validate_config(StackConfig, {"compare": ["average", "logistc"]})
    with pytest.raises(ConfigError, match=r"meta: unknown meta-model 'bets'; did you mean 'best'"):
        validate_config(StackConfig, {"meta": "bets"})
    with pytest.raises(ConfigError, match=r"compare.0: unknown meta-model 'best'"):
        validate_config(StackConfig, {"compare": ["best"]})  # best chooses among them


def test_channels() -> None:
    from kelp.cnn.channels import check_channels

    with pytest.raises(
        ConfigError,
        match=r"^unknown channel 'NDVII'; did you mean 'NDVI'\? valid: nir, NDVI \(also unknown: "
        r"'foo'\); change \[cnn\] channels",
    ):
        check_channels(["nir", "NDVII", "foo"], ["nir", "NDVI"])
