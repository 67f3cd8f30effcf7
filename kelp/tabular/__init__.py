"""Per-pixel tree models: registry, devices, per-fold training, dense OOF and test maps.

Typical use::

    from kelp.layout import RunLayout
    from kelp.tabular import TabularConfig, train_trees, predict_tiles

    layout = RunLayout.of("runs/demo", "data/synth")
    manifest = train_trees(TabularConfig(models=("lightgbm",)), layout)
    for tile_id, prob in predict_tiles(catalog.test, "runs/demo", "lightgbm"):
        ...

Heavy libraries (LightGBM, XGBoost, CatBoost) are imported when a model is first used.
"""

from kelp.data.split import FoldPlan, plan_fold
from kelp.tabular.config import MODEL_NAMES, ModelName, TabularConfig
from kelp.tabular.data import FeatureTable, check_feature_names, load_table
from kelp.tabular.predict import load_fold_models, predict_tiles
from kelp.tabular.registry import create_model, load_model, parse_models
from kelp.tabular.train import train_trees

__all__ = [
    "MODEL_NAMES",
    "FeatureTable",
    "FoldPlan",
    "ModelName",
    "TabularConfig",
    "check_feature_names",
    "create_model",
    "load_fold_models",
    "load_model",
    "load_table",
    "parse_models",
    "plan_fold",
    "predict_tiles",
    "train_trees",
]
