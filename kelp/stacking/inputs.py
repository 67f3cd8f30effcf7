"""The stacker's inputs: every base model's out-of-fold maps, checked to be honest.

Each base model writes ``RUN/oof/<model>/`` (:class:`kelp.maps.MapStore`) whose manifest
records, per tile, the fold whose model predicted it. Before anything is fit we check that
every model covers every train tile, that each tile was predicted by the model of the fold
that holds it out in the current ``folds.csv`` (so no pixel comes from a model that trained
on it), and that all models were trained on the same folds file and the same channel stack.
"""

from dataclasses import dataclass

import numpy as np

from kelp.data.folds import FoldAssignment
from kelp.errors import StaleInputError
from kelp.layout import RunLayout, file_sha256
from kelp.maps import MapStore

__all__ = ["BaseMaps", "open_base_maps", "train_command"]


def train_command(model: str) -> str:
    """The command that (re)writes a base model's out-of-fold maps."""
    return "kelp train-cnn" if model == "cnn" else f"kelp train-trees --models {model}"


@dataclass(frozen=True)
class BaseMaps:
    """Out-of-fold logit maps of the base models.

    Attributes:
        names: model names, the CNN first, then the trees by name.
        stores: their map folders.
        keys: the key each model's maps were made under (what ``kelp predict`` checks its
            fold ensembles against).
        stack_hash: the channel stack every model was trained on.
        fold_of: the fold that held each train tile out.
        folds_sha256: the folds file every model's maps were made with.
    """

    names: tuple[str, ...]
    stores: tuple[MapStore, ...]
    keys: tuple[str, ...]
    stack_hash: str | None
    fold_of: dict[str, int]
    folds_sha256: str

    def logits(self, tile_id: str) -> np.ndarray:
        """``(M, H, W) float32``: each model's logit, as stored."""
        return np.stack([store.read(tile_id) for store in self.stores])


def open_base_maps(
    layout: RunLayout, assignment: FoldAssignment, models: tuple[str, ...] = ()
) -> BaseMaps:
    """Open and validate the out-of-fold maps under ``RUN/oof``.

    Args:
        layout: the run (its folds file's hash must match the models').
        assignment: the current folds, as read from ``layout.folds``.
        models: model folder names to use; empty = every folder under ``RUN/oof``.

    Returns:
        The maps.

    Raises:
        StaleInputError: no maps, a model or tile missing, or maps made with other folds or
            another channel stack; the message names the command to run.
    """
    oof, folds_path = layout.oof_dir, layout.folds
    found = sorted(p.name for p in oof.iterdir() if p.is_dir()) if oof.is_dir() else []
    names = list(models) or found
    if not names:
        raise StaleInputError(
            f"no out-of-fold maps in {oof}: run `kelp train-trees` and/or `kelp train-cnn` first"
        )
    names.sort(key=lambda n: (n != "cnn", n))
    sha = file_sha256(folds_path)
    stores: list[MapStore] = []
    keys: list[str] = []
    stack_hashes: dict[str, str | None] = {}
    for name in names:
        store = MapStore(oof / name)
        try:
            manifest = store.manifest()
        except FileNotFoundError:
            raise StaleInputError(
                f"out-of-fold maps of {name!r} missing or incomplete in {store.root}: "
                f"run `{train_command(name)}`"
            ) from None
        if manifest.get("folds_sha256") != sha:
            raise StaleInputError(
                f"out-of-fold maps of {name!r} were made with another folds file than "
                f"{folds_path}: rerun `{train_command(name)}`"
            )
        wrong, missing = [], []
        for tile_id, fold in zip(assignment.tile_ids, assignment.folds.tolist(), strict=True):
            predicted_by = manifest.get("folds", {}).get(tile_id)
            if predicted_by is None or not store.has(tile_id):
                missing.append(tile_id)
            elif predicted_by != fold:
                wrong.append(tile_id)
        if missing:
            raise StaleInputError(
                f"{len(missing)} train tile(s) have no out-of-fold map of {name!r} "
                f"(e.g. {missing[:3]}): run `{train_command(name)}` for all folds"
            )
        if wrong:
            raise StaleInputError(
                f"{len(wrong)} map(s) of {name!r} were predicted by another fold's model than "
                f"the one holding the tile out (e.g. {wrong[:3]}): rerun `{train_command(name)}`"
            )
        if manifest.get("kind") != "logit":
            raise StaleInputError(
                f"out-of-fold maps of {name!r} in {store.root} hold {manifest.get('kind')} values "
                f"from an older kelp (base models now store float32 logits): rerun "
                f"`{train_command(name)}`"
            )
        stores.append(store)
        keys.append(str(manifest.get("key")))
        stack_hashes[name] = manifest.get("stack_hash")
    if len(set(stack_hashes.values())) > 1:
        raise StaleInputError(
            f"base models were trained on different feature configs {stack_hashes}: rebuild "
            "features once and retrain them all"
        )
    fold_of = dict(zip(assignment.tile_ids, assignment.folds.tolist(), strict=True))
    stack_hash = next(iter(stack_hashes.values()))
    return BaseMaps(tuple(names), tuple(stores), tuple(keys), stack_hash, fold_of, sha)
