"""The one reader of a feature build: what every later stage takes from ``features/``.

``kelp build-features`` writes ``OUT/manifest.json``; trees, CNN, stacker and predict all
read it through :func:`read_build`, which checks it once (the config still yields the
recorded channel names and stack hash) and exposes the fields those stages need. The files'
band order, in particular, comes only from here: a run whose tiles store their bands in
another order is read the same way by every stage.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kelp.bands import DEFAULT_BAND_ORDER
from kelp.errors import StaleInputError
from kelp.features.config import FeatureConfig
from kelp.features.stack import channel_names
from kelp.layout import file_sha256

__all__ = ["FeatureBuild", "read_build", "read_manifest"]


def read_manifest(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw ``OUT/manifest.json`` of a feature build.

    Raises:
        FileNotFoundError: no manifest; the message says which command writes it.
    """
    path = Path(out) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `kelp build-features` first")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StaleInputError(
            f"{path} is not valid JSON (truncated?): rerun `kelp build-features`"
        ) from None
    return manifest


@dataclass(frozen=True)
class FeatureBuild:
    """A checked feature build.

    Attributes:
        root: the build folder.
        manifest: its manifest as written.
        config: the feature config it was built with.
        band_order: the files' band order it read the tiles with.
        feature_names: channel names, in stack order.
        stack_hash: hash of the channel definitions.
        table_hash: hash of channels + sampling.
        folds_sha256: SHA-256 of the folds file it was built from.
        tiles: built train tiles, ``{tile_id: {"fold": k, "rows": n, ...}}``.
    """

    root: Path
    manifest: dict[str, Any]
    config: FeatureConfig
    band_order: tuple[str, ...]
    feature_names: tuple[str, ...]
    stack_hash: str
    table_hash: str
    folds_sha256: str
    tiles: dict[str, dict[str, Any]]

    def check_folds(self, folds: str | os.PathLike[str]) -> str:
        """The folds file's SHA-256, after checking the build was made from it.

        Raises:
            StaleInputError: built from another folds file.
        """
        sha = file_sha256(folds)
        if sha != self.folds_sha256:
            raise StaleInputError(
                f"the features in {self.root} were built from another folds file than "
                f"{folds}: rerun `kelp build-features --folds {folds}`"
            )
        return sha

    def normalisation(self, without_fold: int | None = None) -> dict[str, Any]:
        """Per-channel statistics of every built tile, or of every tile but one fold's.

        Raises:
            StaleInputError: the manifest has none for that fold.
        """
        stats = self.manifest.get("normalisation", {})
        part = stats.get("train") if without_fold is None else stats.get("without_fold", {})
        if without_fold is not None:
            part = part.get(str(without_fold))
        if not part:
            what = "" if without_fold is None else f" without fold {without_fold}"
            raise StaleInputError(
                f"{self.root}/manifest.json has no normalisation statistics{what}: rerun "
                "`kelp build-features`"
            )
        channels: dict[str, Any] = part["channels"]
        return channels


def read_build(root: str | os.PathLike[str]) -> FeatureBuild:
    """Read and check a feature build.

    Args:
        root: the build folder (``RUN/features``).

    Returns:
        The build.

    Raises:
        FileNotFoundError: no manifest (says to run ``kelp build-features``).
        StaleInputError: a manifest made by another version of the channel code, or
            unreadable; says to rerun ``kelp build-features``.
    """
    root = Path(root)
    manifest = read_manifest(root)
    rerun = "rerun `kelp build-features`"
    try:
        config = FeatureConfig.model_validate(manifest["config"])
        names = tuple(manifest["feature_names"])
        stack_hash = str(manifest["stack_hash"])
    except (KeyError, ValueError) as error:
        detail = " ".join(str(error).split())  # one line, whatever pydantic prints
        raise StaleInputError(f"{root}/manifest.json is incomplete ({detail}): {rerun}") from None
    if config.stack_hash() != stack_hash:
        raise StaleInputError(
            f"{root} was built by another version of the channel code (stack hash "
            f"{stack_hash}, now {config.stack_hash()}): {rerun}"
        )
    if tuple(channel_names(config)) != names:
        raise StaleInputError(
            f"{root}/manifest.json lists other feature names (or another order) than its "
            f"config gives: {rerun}"
        )
    return FeatureBuild(
        root=root,
        manifest=manifest,
        config=config,
        band_order=tuple(manifest.get("band_order") or DEFAULT_BAND_ORDER),
        feature_names=names,
        stack_hash=stack_hash,
        table_hash=str(manifest.get("table_hash")),
        folds_sha256=str(manifest.get("folds_sha256")),
        tiles=dict(manifest.get("tiles", {})),
    )
