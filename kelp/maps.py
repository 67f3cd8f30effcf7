"""Dense per-tile prediction maps on disk: tree probabilities and CNN logits, keyed alike.

A map folder holds one ``<tile_id>.npy`` per tile, ``(H, W) float16``, and a
``manifest.json`` that says what the maps are (``kind``: ``"probability"`` or ``"logit"``),
which model made them and, for out-of-fold maps, which fold's model predicted each tile. The
stacker reads tree and CNN maps the same way and checks from those fold ids that no pixel was
predicted by a model that trained on it.

float16 keeps a 350x350 map at 245 KB; probabilities keep about 3 significant digits
(absolute error < 5e-4 near 1, far smaller near 0) and logits are clipped to +-60 (well
inside float16), which is below any threshold resolution we tune.
"""

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kelp._files import atomic_path

__all__ = ["LOGIT_CLIP", "MapKind", "MapStore", "logit", "sigmoid"]

MapKind = Literal["probability", "logit"]
LOGIT_CLIP = 60.0
_MANIFEST = "manifest.json"


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
        """Store one map atomically as float16 (logits clipped to +-60).

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
            np.save(f, values.astype(np.float16))
        return path

    def read(self, tile_id: str) -> np.ndarray:
        """One map as ``(H, W) float32``.

        Raises:
            FileNotFoundError: no map for this tile; says which folder was searched.
        """
        path = self.path(tile_id)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no map for tile {tile_id} in {self.root}")
        return np.load(path).astype(np.float32)

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
        result: dict[str, Any] = json.loads(path.read_text())
        return result
