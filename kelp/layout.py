"""The run folder: every path a run writes or reads, and the two hashes that key its stages.

One :class:`RunLayout` knows where everything of a run lives; stages, the report, the run
list and MLflow logging ask it instead of spelling paths out::

    RUN/config.toml, config.json      the experiment config as given / as validated
    RUN/run.json                      git commit, dataset hash, versions, per-stage records
    RUN/folds.csv, tile_stats.csv     folds and per-tile statistics (`kelp data folds`)
    RUN/features/                     Parquet table + manifest.json (`kelp build-features`)
    RUN/tabular/<model>/fold=<k>/     tree models, metrics.json (`kelp train-trees`)
    RUN/cnn/fold=<k>/{best,last}/     U-Net checkpoints, log.csv, curves.png (`kelp train-cnn`)
    RUN/oof/<model>/                  dense out-of-fold maps of every base model
    RUN/test/cnn/                     fold-averaged test logits (`kelp predict-cnn`)
    RUN/stacking/                     meta-model, decision, comparison, fused OOF maps
    RUN/predictions/                  <tile_id>_kelp.tif + submission.tar (`kelp predict`)
    RUN/report.html                   the picture of the run

A layout also says what the run reads: the dataset folder and the order of the bands in its
files. The folds file and the feature build may live elsewhere (``--folds-file``,
``--features``): a layout carries those two paths, defaulting to the run folder's own.
"""

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kelp.bands import DEFAULT_BAND_ORDER

__all__ = ["RunLayout", "file_sha256", "short_hash"]


def short_hash(payload: Any) -> str:
    """16 hex digits of the SHA-256 of ``payload`` as canonical JSON (sorted keys, compact).

    Objects JSON cannot encode (paths, ...) are written as their ``str``.
    """
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The full SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder.

    Attributes:
        root: the run folder.
        data: the dataset folder (``RUN/data`` unless given, where a synthetic set goes).
        folds: the folds CSV (``RUN/folds.csv`` unless given).
        features: the feature build (``RUN/features`` unless given).
        band_order: the dataset files' bands, first band first.
    """

    root: Path
    data: Path
    folds: Path
    features: Path
    band_order: tuple[str, ...] = DEFAULT_BAND_ORDER

    @classmethod
    def of(
        cls,
        root: str | os.PathLike[str],
        data: str | os.PathLike[str] | None = None,
        *,
        folds: str | os.PathLike[str] | None = None,
        features: str | os.PathLike[str] | None = None,
        band_order: Sequence[str] = DEFAULT_BAND_ORDER,
    ) -> "RunLayout":
        """The layout of run folder ``root``; what is not given is the folder's own."""
        root = Path(root)
        return cls(
            root,
            Path(data) if data is not None else root / "data",
            Path(folds) if folds is not None else root / "folds.csv",
            Path(features) if features is not None else root / "features",
            tuple(band_order),
        )

    # the run itself
    @property
    def config_toml(self) -> Path:
        """``RUN/config.toml``: the config file as given."""
        return self.root / "config.toml"

    @property
    def config_json(self) -> Path:
        """``RUN/config.json``: the config as validated, every default filled in."""
        return self.root / "config.json"

    @property
    def run_json(self) -> Path:
        """``RUN/run.json``: provenance and the record of every stage."""
        return self.root / "run.json"

    @property
    def report(self) -> Path:
        """``RUN/report.html``."""
        return self.root / "report.html"

    @property
    def tile_stats(self) -> Path:
        """``RUN/tile_stats.csv``: per-tile statistics of `kelp data check`."""
        return self.root / "tile_stats.csv"

    # base models
    @property
    def tabular(self) -> Path:
        """``RUN/tabular``: the tree stage's folder (manifest, report)."""
        return self.root / "tabular"

    def tree_fold(self, model: str, fold: int) -> Path:
        """``RUN/tabular/<model>/fold=<k>``: one tree model of one fold."""
        return self.tabular / model / f"fold={fold}"

    @property
    def cnn(self) -> Path:
        """``RUN/cnn``: the CNN stage's folder."""
        return self.root / "cnn"

    def cnn_fold(self, fold: int) -> Path:
        """``RUN/cnn/fold=<k>``: checkpoints, log and curves of one fold."""
        return self.cnn / f"fold={fold}"

    def cnn_best(self, fold: int) -> Path:
        """``RUN/cnn/fold=<k>/best``: the checkpoint of the epoch chosen on the inner split."""
        return self.cnn_fold(fold) / "best"

    def cnn_last(self, fold: int) -> Path:
        """``RUN/cnn/fold=<k>/last``: the last epoch's checkpoint and state, for resuming."""
        return self.cnn_fold(fold) / "last"

    @property
    def oof_dir(self) -> Path:
        """``RUN/oof``: one folder of out-of-fold maps per base model."""
        return self.root / "oof"

    def oof(self, model: str) -> Path:
        """``RUN/oof/<model>``: a base model's out-of-fold maps."""
        return self.oof_dir / model

    def test(self, model: str) -> Path:
        """``RUN/test/<model>``: a base model's test maps (`kelp predict-cnn`)."""
        return self.root / "test" / model

    # fusion and output
    @property
    def stacking(self) -> Path:
        """``RUN/stacking``: meta-model, decision, comparison, fused OOF maps."""
        return self.root / "stacking"

    @property
    def predictions(self) -> Path:
        """``RUN/predictions``: the final masks and ``submission.tar``."""
        return self.root / "predictions"

    def outputs(self, stage: str, tree_models: tuple[str, ...] = ()) -> tuple[Path, ...]:
        """What stage ``stage`` of `kelp run` writes (removed by ``--force``).

        Args:
            stage: ``folds``, ``features``, ``trees``, ``cnn``, ``stack`` or ``predict``.
            tree_models: every tree model name (their OOF folders belong to ``trees``).
        """
        by_stage: dict[str, tuple[Path, ...]] = {
            "folds": (self.root / "folds.csv", self.tile_stats),
            "features": (self.root / "features",),
            "trees": (self.tabular, *(self.oof(m) for m in tree_models)),
            "cnn": (self.cnn, self.oof("cnn")),
            "stack": (self.stacking,),
            "predict": (self.predictions,),
        }
        return by_stage[stage]
