"""Checkpoints: a directory with the weights and the ``config.json`` that rebuilds the model.

Layout of a checkpoint directory::

    config.json          model spec, channel list, normalisation, feature config, training
                         config and key, fold, epoch, score, versions
    model.safetensors    the weights (safetensors: loading runs no pickled code)
    state.pt             ("last" checkpoints only) optimizer, scheduler, scaler, RNG states,
                         epoch, log rows, early-stopping state: what resuming needs

A checkpoint is written into a temporary sibling directory and swapped in by renames, so a
reader finds either the previous checkpoint or the new one, never a mix.

Loading rebuilds the network with ``encoder_weights = none`` (the trained weights replace
any pretrained ones, so no download is ever needed to predict), and refuses a checkpoint
whose channels differ from the requested ones: the same tensor shape with different channel
meanings would silently produce garbage.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kelp import __version__
from kelp.artifacts import read_json
from kelp.cnn import model as model_lib
from kelp.cnn.normalise import Normaliser
from kelp.errors import StaleInputError

__all__ = [
    "CONFIG_FILE",
    "FORMAT",
    "STATE_FILE",
    "WEIGHTS_FILE",
    "Checkpoint",
    "load_checkpoint",
    "load_state",
    "save_checkpoint",
]

FORMAT = "kelp-cnn-checkpoint/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: its directory.
        model: the network, in eval mode, on the requested device.
        spec: what rebuilt it.
        normaliser: the normalisation it was trained with.
        meta: the whole ``config.json``.
    """

    path: Path
    model: model_lib.PaddedModel
    spec: model_lib.ModelSpec
    normaliser: Normaliser
    meta: dict[str, Any]

    @property
    def channels(self) -> tuple[str, ...]:
        """Input channel names, in order."""
        return self.normaliser.channels


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    spec: model_lib.ModelSpec,
    normaliser: Normaliser,
    meta: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory (replacing any previous one atomically).

    Args:
        path: the directory, e.g. ``RUN/cnn/fold=0/best``.
        model: the network whose ``state_dict`` is saved.
        spec: what rebuilds the network.
        normaliser: the input normalisation.
        meta: more JSON-ready facts (feature config, training config, fold, epoch...).
        state: training state for resuming, saved with ``torch.save``.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        config = {
            "format": FORMAT,
            "model": spec.to_json(),
            "channels": list(normaliser.channels),
            "normalisation": normaliser.to_json(),
            **meta,
            "versions": {"kelp": __version__, "torch": torch.__version__},
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / WEIGHTS_FILE)
        if state is not None:
            torch.save(state, tmp / STATE_FILE)
        _swap(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _swap(new: Path, path: Path) -> None:
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    path: str | os.PathLike[str],
    channels: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> Checkpoint:
    """Rebuild a checkpoint's network and load its weights.

    Args:
        path: the checkpoint directory.
        channels: the channels the caller will feed, in order; ``None`` accepts the
            checkpoint's own.
        device: where to put the model.

    Returns:
        The checkpoint, its model in eval mode.

    Raises:
        FileNotFoundError: no checkpoint there (the message says which command writes one).
        StaleInputError: not a kelp CNN checkpoint, or the checkpoint's channel list
            differs from ``channels``.
    """
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file() or not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"{path}: no CNN checkpoint ({CONFIG_FILE} + {WEIGHTS_FILE}); "
            "train one with `kelp train-cnn`"
        )
    rerun = "retrain it with `kelp train-cnn`"
    meta = read_json(config_path, rerun)
    if meta.get("format") != FORMAT:
        raise StaleInputError(
            f"{config_path}: not a kelp CNN checkpoint (format {meta.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    theirs = list(meta["channels"])
    if channels is not None and list(channels) != theirs:
        missing = [c for c in channels if c not in theirs]
        extra = [c for c in theirs if c not in channels]
        detail = f"missing {missing}, extra {extra}" if missing or extra else "different order"
        raise StaleInputError(
            f"checkpoint {path} was trained on channels {theirs}, but {list(channels)} were "
            f"requested ({detail}); request the checkpoint's channels, or retrain with "
            "`kelp train-cnn`"
        )
    # The trained weights replace the encoder's, so never download pretrained ones here.
    spec = replace(model_lib.ModelSpec.from_json(meta["model"]), encoder_weights="none")
    model = model_lib.create_model(spec)
    try:
        weights = load_file(path / WEIGHTS_FILE)
    except Exception as error:  # safetensors raises its own SafetensorError (an Exception)
        raise StaleInputError(
            f"{path / WEIGHTS_FILE}: unreadable or truncated ({error}); {rerun}"
        ) from None
    model.load_state_dict(weights)
    model.to(device).eval()
    normaliser = Normaliser.from_json(meta["normalisation"])
    return Checkpoint(path, model, spec, normaliser, meta)


def load_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The resumable training state of a ``last`` checkpoint, or ``None`` if there is none.

    Args:
        path: the checkpoint directory.

    Returns:
        What :func:`save_checkpoint` stored as ``state``.
    """
    state_path = Path(path) / STATE_FILE
    if not state_path.is_file():
        return None
    # Our own file, written by save_checkpoint: it holds numpy RNG states, which the
    # weights-only unpickler refuses.
    state: dict[str, Any] = torch.load(state_path, map_location="cpu", weights_only=False)
    return state
