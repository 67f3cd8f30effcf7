"""Dense per-tile prediction maps on disk: base-model logits and fused probabilities.

A map folder holds one ``<tile_id>.npy`` per tile, ``(H, W) float32``, and a
``manifest.json`` that says what the maps are (``kind``: ``"logit"`` for every base model,
trees and CNN alike; ``"probability"`` for the stacker's fused maps), which model made them
and, for out-of-fold maps, which fold's model predicted each tile. The stacker reads every
base model's maps the same way and checks from those fold ids that no pixel was predicted by
a model that trained on it.

A store being filled under some key (what made its maps: model files, options, tiles)
carries a ``.partial.json`` with that key until its manifest is written; :func:`open_store`
with another key deletes the old maps first, so stale maps never mix with new ones and an
interrupted fill resumes where it stopped.

Values are stored as float32, exactly as computed (490 KB per 350x350 map; logits clipped to
+-60): the stacker is fit on the very numbers ``kelp predict`` later computes for a test
tile, with no rounding on one path and not the other. (v0.1 stored float16 tree
probabilities, which turned every p >= 0.99976 into 1.0, logit 13.8, where predict kept 9.2.)
"""

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kelp._files import atomic_path
from kelp._progress import say
from kelp.artifacts import read_json, read_marker, read_npy

__all__ = [
    "LOGIT_CLIP",
    "MapKind",
    "MapStore",
    "finish_store",
    "logit",
    "open_store",
    "sigmoid",
    "store_manifest",
]

MapKind = Literal["probability", "logit"]
LOGIT_CLIP = 60.0
_MANIFEST = "manifest.json"
_PARTIAL = ".partial.json"


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``log(p / (1 - p))`` in float32, with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(p, np.float32), eps, 1 - eps)
    return np.log(p / (1 - p)).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32 without overflow warnings."""
    x = np.clip(np.asarray(x, np.float32), -LOGIT_CLIP, LOGIT_CLIP)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


class MapStore:
    """A folder of per-tile ``(H, W)`` maps with a manifest.

    Args:
        root: the folder, e.g. ``runs/x/oof/lightgbm``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, tile_id: str) -> Path:
        """Where ``tile_id``'s map lives."""
        return self.root / f"{tile_id}.npy"

    def write(self, tile_id: str, values: np.ndarray, kind: MapKind) -> Path:
        """Store one map atomically as float32 (logits clipped to +-60).

        Raises:
            ValueError: not 2-D, or probabilities outside [0, 1], or NaN.
        """
        values = np.asarray(values, np.float32)
        if values.ndim != 2:
            raise ValueError(f"map of {tile_id} must be (H, W), got {values.shape}")
        if np.isnan(values).any():
            raise ValueError(f"map of {tile_id} holds NaN")
        if kind == "probability" and (values.min() < 0 or values.max() > 1):
            raise ValueError(f"probability map of {tile_id} leaves [0, 1]")
        if kind == "logit":
            values = np.clip(values, -LOGIT_CLIP, LOGIT_CLIP)
        path = self.path(tile_id)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, values)
        return path

    def read(self, tile_id: str) -> np.ndarray:
        """One map as ``(H, W) float32``.

        Raises:
            FileNotFoundError: no map for this tile; says which folder was searched.
        """
        path = self.path(tile_id)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no map for tile {tile_id} in {self.root}")
        rerun = f"delete it and rerun the command that wrote {self.root} (`kelp run` redoes it)"
        return np.asarray(read_npy(path, rerun), np.float32)  # maps are float32: no copy

    def has(self, tile_id: str) -> bool:
        """Whether ``tile_id`` has a map."""
        return self.path(tile_id).is_file()

    def tile_ids(self) -> list[str]:
        """Tiles with a map, sorted."""
        return sorted(p.stem for p in self.root.glob("*.npy"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write ``manifest.json`` atomically (must hold ``kind`` and ``model``)."""
        missing = {"kind", "model"} - manifest.keys()
        if missing:
            raise ValueError(f"map manifest needs {sorted(missing)}")
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / _MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2))

    def manifest(self) -> dict[str, Any]:
        """The manifest.

        Raises:
            FileNotFoundError: none written yet (the maps are incomplete or absent).
        """
        path = self.root / _MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: the maps in {self.root} are missing or incomplete"
            )
        return read_json(path, f"rerun the command that wrote {self.root}")


def store_manifest(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The store's manifest, or ``None`` when it has none yet."""
    try:
        return MapStore(root).manifest()
    except FileNotFoundError:
        return None


def open_store(root: str | os.PathLike[str], key: str) -> MapStore:
    """Open a map store for writing maps made under ``key``.

    Args:
        root: the store's folder.
        key: identifies the model/config/input that makes the maps.

    Returns:
        The store; maps made under another key are gone, maps made under this key stay
        (an interrupted fill resumes).
    """
    store = MapStore(root)
    manifest = store_manifest(root)
    partial = store.root / _PARTIAL
    held = manifest.get("key") if manifest else None
    if held is None:
        held = (read_marker(partial) or {}).get("key")
    stale = store.tile_ids()
    if held != key and stale:
        say(f"{store.root}: removing {len(stale)} map(s) made with another config or input")
        for tile_id in stale:
            store.path(tile_id).unlink()
        (store.root / _MANIFEST).unlink(missing_ok=True)
    store.root.mkdir(parents=True, exist_ok=True)
    with atomic_path(partial) as tmp:
        tmp.write_text(json.dumps({"key": key}))
    return store


def finish_store(store: MapStore, manifest: dict[str, Any]) -> None:
    """Write the manifest (which must hold ``key``) and drop the partial marker."""
    store.write_manifest(manifest)
    (store.root / _PARTIAL).unlink(missing_ok=True)
