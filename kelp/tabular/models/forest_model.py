"""A random forest grown with XGBoost's histogram trees, saved as UBJSON (``model.ubj``).

Why not scikit-learn's ``RandomForestClassifier``: on the 200-tile synthetic table (680k
rows x 68 features, 22% NaN, sampling weights) it took about 27 CPU-seconds per tree here,
so 100 trees per fold would take about 20 minutes on 2 cores, hours on the real table, and
its only file format is a pickle tied to one scikit-learn version. XGBoost grows the same
kind of forest from 256-bin histograms in well under a minute, learns a direction for
missing values, trains on a GPU, and saves to its own versioned, portable UBJSON format.

It is a classic random forest, not boosting: one round of ``num_parallel_tree`` trees,
each on a row subsample (0.632, the share of distinct rows in a bootstrap) with features
sampled per node, fitted by squared error on the 0/1 label from the label mean with no
leaf regularisation, so every leaf holds its rows' kelp frequency (squared-error splits on
0/1 labels are Gini splits) and XGBoost averages the trees: the prediction is the average
leaf frequency, like scikit-learn's forest.
"""

from typing import Any, ClassVar

from kelp.tabular.config import ModelName
from kelp.tabular.models.xgboost_model import XGBoostModel

__all__ = ["RandomForestModel"]


class RandomForestModel(XGBoostModel):
    """Random forest: the tree family least correlated with the boosted models.

    Defaults and why:

    - ``num_parallel_tree`` 32: dense prediction time is linear in the trees, and 64 trees
      (the v0.1 default) predicted a 350 px tile at 6-9.5 tiles/s on 2 cores against a
      target of 10. On the hard preset (200 tiles, 5 folds) the nested out-of-fold Dice was
      0.4019 with 32 trees, 0.4021 with 40 and 0.4058 with 64 (seed 0), 0.4194 with 32 and
      0.4230 with 64 (seed 1): 0.004 for half the prediction time. Fewer, deeper trees
      (16 of depth 16: 0.380; 32 of depth 14: 0.396) and more features per node (0.5:
      0.387) scored lower.
    - ``max_depth`` 12, ``min_child_weight`` 10 (squared-error hessians are the row
      weights: at least 10 rows per leaf without sample weights): deep trees as forests
      want, without leaves of a few correlated pixels.
    - ``subsample`` 0.632, ``colsample_bynode`` 0.3: decorrelated trees.
    - ``learning_rate`` 1, ``reg_lambda`` 0: leaves are plain kelp frequencies, averaged.

    No early stopping (``max_rounds`` does not apply): the inner early-stopping tiles are
    added to its training rows.
    """

    name: ClassVar[ModelName] = "random_forest"
    uses_early_stopping: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {
        "objective": "reg:squarederror",
        "tree_method": "hist",
        "num_parallel_tree": 32,
        "learning_rate": 1.0,
        "max_depth": 12,
        "min_child_weight": 10.0,
        "subsample": 0.632,
        "colsample_bynode": 0.3,
        "reg_lambda": 0.0,
        "max_bin": 256,
        "verbosity": 1,
    }

    def _rounds(self) -> int:
        return 1
