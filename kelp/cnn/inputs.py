"""Where a run keeps the CNN's inputs and outputs, and the checks that the inputs agree.

Run directory convention (``RUN`` = ``--run``)::

    RUN/folds.csv                 folds (input; `kelp data folds`)
    RUN/features/manifest.json    feature config + normalisation statistics (input;
                                  `kelp build-features`)
    RUN/cnn/manifest.json         the stage's manifest: config, inputs, per-fold results
    RUN/cnn/fold=<k>/best/        best checkpoint (by validation global Dice)
    RUN/cnn/fold=<k>/last/        last checkpoint + training state, for resuming
    RUN/cnn/fold=<k>/log.csv      epoch, train_loss, val_loss, val_dice, lr, seconds
    RUN/cnn/fold=<k>/curves.png   losses, validation Dice and learning rate per epoch
    RUN/cnn/fold=<k>/fold.json    the finished fold's summary (absent while training)
    RUN/oof/cnn/<tile_id>.npy     out-of-fold logits (H, W) float16, + manifest.json
    RUN/test/cnn/<tile_id>.npy    fold-averaged logits of `kelp predict-cnn`, + manifest.json
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kelp.data.bands import DEFAULT_BAND_ORDER
from kelp.data.catalog import TileRecord, scan_catalog
from kelp.data.folds import FoldAssignment, read_folds
from kelp.features import FeatureConfig
from kelp.features.build import read_manifest

__all__ = ["CnnLayout", "RunInputs", "StaleInputError", "load_inputs"]


class StaleInputError(ValueError):
    """Inputs that do not belong together; the message says which command to rerun."""


@dataclass(frozen=True)
class CnnLayout:
    """The CNN's paths inside a run directory.

    Attributes:
        run: the run directory.
    """

    run: Path

    @property
    def root(self) -> Path:
        """``RUN/cnn``."""
        return self.run / "cnn"

    def fold(self, k: int) -> Path:
        """``RUN/cnn/fold=<k>``."""
        return self.root / f"fold={k}"

    def best(self, k: int) -> Path:
        """Fold ``k``'s best checkpoint."""
        return self.fold(k) / "best"

    def last(self, k: int) -> Path:
        """Fold ``k``'s last checkpoint (for resuming)."""
        return self.fold(k) / "last"

    def trained_folds(self) -> list[int]:
        """Folds with a best checkpoint, sorted.

        Raises:
            FileNotFoundError: none yet; says to run ``kelp train-cnn``.
        """
        from kelp.cnn.checkpoint import WEIGHTS_FILE

        folds = sorted(
            int(p.name.split("=", 1)[1])
            for p in self.root.glob("fold=*")
            if (p / "best" / WEIGHTS_FILE).is_file()
        )
        if not folds:
            raise FileNotFoundError(
                f"no trained fold under {self.root} (expected fold=<k>/best/): run "
                f"`kelp train-cnn DATA --run {self.run}` first"
            )
        return folds

    @property
    def oof(self) -> Path:
        """``RUN/oof/cnn``: out-of-fold logit maps."""
        return self.run / "oof" / "cnn"

    @property
    def test(self) -> Path:
        """``RUN/test/cnn``: default output of ``kelp predict-cnn``."""
        return self.run / "test" / "cnn"


@dataclass(frozen=True)
class RunInputs:
    """Everything training reads, checked to belong together.

    Attributes:
        data: the dataset folder.
        folds_path: the folds CSV.
        folds_sha256: its SHA-256.
        features_dir: the feature build folder.
        features: its manifest.
        feature_config: the feature config it was built with.
        band_order: the files' band order it used.
        records: usable train tiles (in the folds and the feature build), by id, sorted.
        fold_of: the fold holding out each of them.
        k: number of folds.
        assignment: the folds file as read (every train tile, with its area).
    """

    data: Path
    folds_path: Path
    folds_sha256: str
    features_dir: Path
    features: dict[str, Any]
    feature_config: FeatureConfig
    band_order: tuple[str, ...]
    records: dict[str, TileRecord]
    fold_of: dict[str, int]
    k: int
    assignment: FoldAssignment

    def tiles_in(self, fold: int) -> list[str]:
        """Tiles held out in ``fold``, sorted."""
        return [t for t in self.records if self.fold_of[t] == fold]

    def normalisation_stats(self, fold: int) -> dict[str, Any]:
        """Per-channel statistics of every tile but fold ``fold``'s.

        Raises:
            StaleInputError: the manifest has none for this fold.
        """
        without = self.features.get("normalisation", {}).get("without_fold", {})
        if str(fold) not in without:
            raise StaleInputError(
                f"{self.features_dir}/manifest.json has no normalisation statistics without "
                f"fold {fold}: rerun `kelp build-features`"
            )
        stats: dict[str, Any] = without[str(fold)]["channels"]
        return stats


def load_inputs(
    data: str | os.PathLike[str],
    folds: str | os.PathLike[str],
    features: str | os.PathLike[str],
) -> RunInputs:
    """Read and cross-check the dataset, folds file and feature manifest.

    Args:
        data: the dataset folder.
        folds: the folds CSV.
        features: the feature build folder.

    Returns:
        The checked inputs.

    Raises:
        FileNotFoundError: no feature manifest (says to run `kelp build-features`).
        FoldsError: no or a bad folds file (says to run `kelp data folds`).
        StaleInputError: features built from another folds file, with another version of
            the feature code, or from tiles that the dataset no longer has.
    """
    folds_path, features_dir = Path(folds), Path(features)
    try:
        manifest = read_manifest(features_dir)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error} (or point --features at a feature build); the CNN takes its feature "
            "config and normalisation statistics from it"
        ) from None
    assignment = read_folds(folds_path)
    sha = hashlib.sha256(folds_path.read_bytes()).hexdigest()
    if manifest.get("folds_sha256") != sha:
        raise StaleInputError(
            f"the features in {features_dir} were built from another folds file than "
            f"{folds_path}: rerun `kelp build-features --folds {folds_path}`"
        )
    config = FeatureConfig.model_validate(manifest["config"])
    if config.stack_hash() != manifest.get("stack_hash"):
        raise StaleInputError(
            f"{features_dir} was built by another version of the feature code (stack hash "
            f"{manifest.get('stack_hash')} != {config.stack_hash()}): rerun "
            "`kelp build-features`"
        )
    catalog, _ = scan_catalog(data)
    train = {r.tile_id: r for r in catalog.train}
    fold_of = dict(zip(assignment.tile_ids, assignment.folds.tolist(), strict=True))
    built = sorted(manifest.get("tiles", {}))
    gone = [t for t in built if t not in train or t not in fold_of]
    if gone:
        raise StaleInputError(
            f"{len(gone)} tile(s) of the feature build are not train tiles of {data} and "
            f"{folds_path} (e.g. {gone[:3]}): was it built from another dataset? Rerun "
            "`kelp build-features`"
        )
    return RunInputs(
        data=Path(data),
        folds_path=folds_path,
        folds_sha256=sha,
        features_dir=features_dir,
        features=manifest,
        feature_config=config,
        band_order=tuple(manifest.get("band_order") or DEFAULT_BAND_ORDER),
        records={t: train[t] for t in built},
        fold_of={t: int(fold_of[t]) for t in built},
        k=assignment.k,
        assignment=assignment,
    )
