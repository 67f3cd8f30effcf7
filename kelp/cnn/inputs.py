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
    RUN/oof/cnn/<tile_id>.npy     out-of-fold logits (H, W) float32, + manifest.json
    RUN/test/cnn/<tile_id>.npy    fold-averaged logits of `kelp predict-cnn`, + manifest.json
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kelp.data.catalog import TileRecord, scan_catalog
from kelp.data.folds import FoldAssignment
from kelp.data.folds_file import read_folds
from kelp.errors import StaleInputError
from kelp.features import FeatureConfig
from kelp.features.manifest import FeatureBuild, read_build
from kelp.layout import RunLayout

__all__ = ["RunInputs", "load_inputs", "trained_folds"]


def trained_folds(layout: RunLayout) -> list[int]:
    """Folds of ``RUN/cnn`` with a best checkpoint, sorted (empty when none)."""
    from kelp.cnn.checkpoint import WEIGHTS_FILE

    return sorted(
        int(p.name.split("=", 1)[1])
        for p in layout.cnn.glob("fold=*")
        if (p / "best" / WEIGHTS_FILE).is_file()
    )


@dataclass(frozen=True)
class RunInputs:
    """Everything training reads, checked to belong together.

    Attributes:
        data: the dataset folder.
        folds_path: the folds CSV.
        folds_sha256: its SHA-256.
        build: the feature build (config, band order, names, statistics).
        records: usable train tiles (in the folds and the feature build), by id, sorted.
        fold_of: the fold holding out each of them.
        k: number of folds.
        assignment: the folds file as read (every train tile, with its area).
    """

    data: Path
    folds_path: Path
    folds_sha256: str
    build: FeatureBuild
    records: dict[str, TileRecord]
    fold_of: dict[str, int]
    k: int
    assignment: FoldAssignment

    @property
    def features_dir(self) -> Path:
        """The feature build folder."""
        return self.build.root

    @property
    def features(self) -> dict[str, Any]:
        """The feature build's manifest."""
        return self.build.manifest

    @property
    def feature_config(self) -> FeatureConfig:
        """The feature config the build used."""
        return self.build.config

    @property
    def band_order(self) -> tuple[str, ...]:
        """The files' band order the build used."""
        return self.build.band_order

    def tiles_in(self, fold: int) -> list[str]:
        """Tiles held out in ``fold``, sorted."""
        return [t for t in self.records if self.fold_of[t] == fold]

    def normalisation_stats(self, fold: int) -> dict[str, Any]:
        """Per-channel statistics of every tile but fold ``fold``'s.

        Raises:
            StaleInputError: the manifest has none for this fold.
        """
        return self.build.normalisation(without_fold=fold)


def load_inputs(layout: RunLayout) -> RunInputs:
    """Read and cross-check the dataset, folds file and feature manifest.

    Args:
        layout: the run's dataset folder, folds file and feature build.

    Returns:
        The checked inputs.

    Raises:
        FileNotFoundError: no feature manifest (says to run `kelp build-features`).
        InputError: no or a bad folds file (says to run `kelp data folds`).
        StaleInputError: features built from another folds file, with another version of
            the feature code, or from tiles that the dataset no longer has.
    """
    data, folds_path = layout.data, layout.folds
    try:
        build = read_build(layout.features)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error} (or point --features at a feature build); the CNN takes its feature "
            "config and normalisation statistics from it"
        ) from None
    assignment = read_folds(folds_path)
    sha = build.check_folds(folds_path)
    catalog, _ = scan_catalog(data)
    train = {r.tile_id: r for r in catalog.train}
    fold_of = dict(zip(assignment.tile_ids, assignment.folds.tolist(), strict=True))
    built = sorted(build.tiles)
    gone = [t for t in built if t not in train or t not in fold_of]
    if gone:
        raise StaleInputError(
            f"{len(gone)} tile(s) of the feature build are not train tiles of {data} and "
            f"{folds_path} (e.g. {gone[:3]}): was it built from another dataset? Rerun "
            "`kelp build-features`"
        )
    return RunInputs(
        data=data,
        folds_path=folds_path,
        folds_sha256=sha,
        build=build,
        records={t: train[t] for t in built},
        fold_of={t: int(fold_of[t]) for t in built},
        k=assignment.k,
        assignment=assignment,
    )
