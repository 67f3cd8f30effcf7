"""Tree models by name: one factory, helpful misses, lazy imports of the heavy libraries."""

import importlib
import os
from typing import Any, cast

from kelp.errors import ConfigError
from kelp.tabular.config import MODEL_NAMES, ModelName
from kelp.tabular.models.base import TreeModel, read_model_info

__all__ = [
    "create_model",
    "load_model",
    "model_class",
    "parse_models",
]

# name -> (module, class, pip package): modules import their library on first use only, so
# `kelp --help` and configs stay fast and a missing library names its install line.
_MODELS: dict[ModelName, tuple[str, str, str]] = {
    "lightgbm": ("kelp.tabular.models.lightgbm_model", "LightGBMModel", "lightgbm"),
    "xgboost": ("kelp.tabular.models.xgboost_model", "XGBoostModel", "xgboost"),
    "catboost": ("kelp.tabular.models.catboost_model", "CatBoostModel", "catboost"),
    "random_forest": ("kelp.tabular.models.forest_model", "RandomForestModel", "xgboost"),
}


def _check_name(name: str) -> ModelName:
    if name not in _MODELS:
        raise ConfigError(
            f"unknown model {name!r}; valid models: {', '.join(MODEL_NAMES)} (or 'all')"
        )
    return cast(ModelName, name)


def model_class(name: str) -> type[TreeModel]:
    """The class of a model name.

    Raises:
        ConfigError: ``name`` is not a registered model.
        ImportError: its library is not installed (names the ``pip install`` line).
    """
    module_name, class_name, package = _MODELS[_check_name(name)]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"the {name} model needs {package}: `pip install {package}` ({error})"
        ) from error
    cls: type[TreeModel] = getattr(module, class_name)
    return cls


def create_model(name: str, params: dict[str, Any] | None = None, **options: Any) -> TreeModel:
    """A new, unfitted model.

    Args:
        name: one of ``lightgbm``, ``xgboost``, ``catboost``, ``random_forest``.
        params: library parameter overrides.
        **options: ``device``, ``n_jobs``, ``seed``, ``max_rounds``,
            ``early_stopping_rounds`` (see :class:`TreeModel`).

    Returns:
        The model.

    Raises:
        ConfigError: unknown ``name``.
    """
    return model_class(name)(params, **options)


def load_model(folder: str | os.PathLike[str]) -> TreeModel:
    """Load a saved model folder of any registered kind (read from its ``model.json``).

    Raises:
        FileNotFoundError: not a saved model folder.
        ConfigError: the folder names a model this version does not know.
    """
    return model_class(read_model_info(folder)["model"]).load(folder)


def parse_models(text: str) -> tuple[ModelName, ...]:
    """``"all"`` or comma-separated model names -> names in the order given.

    Raises:
        ConfigError: an unknown name (lists the valid ones).
    """
    if text.strip() == "all":
        return MODEL_NAMES
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"no model named; valid models: {', '.join(MODEL_NAMES)}")
    return tuple(dict.fromkeys(_check_name(n) for n in names))
