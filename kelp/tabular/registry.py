"""Tree models by name: one registry, helpful misses, lazy imports of the heavy libraries.

:data:`MODELS` is the one list of model names (:data:`kelp.tabular.config.MODEL_NAMES` and
the config's ``ModelName`` check come from it). Importing this module imports no model
library: each entry names the module and class to import on first use, and the package to
install when that fails.
"""

import importlib
import os
from pathlib import Path
from typing import Any, NamedTuple

from kelp.errors import ConfigError, KelpError, StaleInputError, unknown_name
from kelp.registry import Registry
from kelp.tabular.models.base import TreeModel, read_model_info

__all__ = [
    "MODELS",
    "LazyModel",
    "create_model",
    "load_model",
    "model_class",
    "parse_models",
]


class LazyModel(NamedTuple):
    """Where a model class lives, imported on first use.

    Attributes:
        module: the module defining the class.
        class_name: the class, a :class:`~kelp.tabular.models.base.TreeModel`.
        package: the pip package the module needs.
    """

    module: str
    class_name: str
    package: str


#: Every tree model, in the default training order.
MODELS: Registry[LazyModel] = Registry("model")
MODELS.register(
    "lightgbm", LazyModel("kelp.tabular.models.lightgbm_model", "LightGBMModel", "lightgbm")
)
MODELS.register(
    "xgboost", LazyModel("kelp.tabular.models.xgboost_model", "XGBoostModel", "xgboost")
)
MODELS.register(
    "catboost", LazyModel("kelp.tabular.models.catboost_model", "CatBoostModel", "catboost")
)
MODELS.register(
    "random_forest", LazyModel("kelp.tabular.models.forest_model", "RandomForestModel", "xgboost")
)


def model_class(name: str) -> type[TreeModel]:
    """The class of a model name.

    Raises:
        ConfigError: ``name`` is not a registered model.
        ImportError: its library is not installed (names the ``pip install`` line).
    """
    module_name, class_name, package = MODELS.get(name)
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
        name: one of :data:`MODELS` (``lightgbm``, ``xgboost``, ``catboost``,
            ``random_forest``).
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
    cls = model_class(read_model_info(folder)["model"])
    try:
        return cls.load(folder)
    except (OSError, ImportError, KelpError):
        raise
    except Exception as error:  # each library raises its own error for a damaged file
        raise StaleInputError(
            f"{Path(folder) / cls.file_name}: the {cls.name} model file is unreadable or truncated "
            f"({type(error).__name__}: {error}); retrain it with `kelp train-trees`"
        ) from None


def parse_models(text: str) -> tuple[str, ...]:
    """``"all"`` or comma-separated model names -> names in the order given.

    Raises:
        ConfigError: an unknown name (lists the valid ones).
    """
    if text.strip() == "all":
        return MODELS.names()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"no model named; valid: {', '.join(MODELS)} (or 'all')")
    for name in names:
        if name not in MODELS:
            raise unknown_name("model", name, MODELS, extra=" (or 'all')")
    return tuple(dict.fromkeys(names))
