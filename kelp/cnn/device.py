"""Where the U-Net runs: ``auto | cpu | cuda``, mixed precision and worker counts.

``auto`` picks CUDA when torch sees a GPU and says what it picked; ``cuda`` without a GPU is
an error rather than a silent fallback, because a run sized for a GPU would take days on a
CPU. Mixed precision only exists on CUDA: on CPU every step runs in float32.
"""

import os
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from kelp._progress import say
from kelp.cnn.config import Amp
from kelp.devices import Device
from kelp.errors import DeviceError

__all__ = [
    "Precision",
    "loader_workers",
    "precision_for",
    "resolve_device",
]


def resolve_device(choice: Device, quiet: bool = False) -> torch.device:
    """Turn ``auto | cpu | cuda`` into a torch device.

    Args:
        choice: the configured device.
        quiet: do not print which device ``auto`` picked.

    Returns:
        ``cuda`` or ``cpu``.

    Raises:
        DeviceError: ``cuda`` requested but torch sees no CUDA GPU, or an unknown choice.
    """
    if choice not in get_args(Device):
        raise DeviceError(f"device must be 'auto', 'cpu' or 'cuda', got {choice!r}")
    available = torch.cuda.is_available()
    if choice == "cuda" and not available:
        built = torch.version.cuda or "no CUDA"
        raise DeviceError(
            f"device 'cuda' was requested but torch {torch.__version__} (built for {built}) "
            "sees no CUDA GPU: run on a machine with one, or use --device cpu (slow beyond "
            "small tiles) or --device auto"
        )
    if choice == "cpu" or (choice == "auto" and not available):
        if choice == "auto" and not quiet:
            say(f"device auto: no CUDA GPU found, using cpu ({torch.get_num_threads()} threads)")
        return torch.device("cpu")
    if choice == "auto" and not quiet:
        say(f"device auto: using cuda ({torch.cuda.get_device_name(0)})")
    return torch.device("cuda")


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs.

    Attributes:
        dtype: autocast dtype, or ``None`` for plain float32.
        scaled: use a gradient scaler (float16 only: its range is too narrow otherwise).
    """

    dtype: torch.dtype | None
    scaled: bool

    @property
    def name(self) -> Literal["bf16", "fp16", "fp32"]:
        """``bf16``, ``fp16`` or ``fp32``."""
        if self.dtype is torch.bfloat16:
            return "bf16"
        return "fp16" if self.dtype is torch.float16 else "fp32"


def precision_for(amp: Amp, device: torch.device) -> Precision:
    """The mixed precision to use for ``amp`` on ``device``.

    bf16 falls back to fp16 on GPUs without bfloat16 support (pre-Ampere).

    Args:
        amp: the configured mode.
        device: where the model runs.

    Returns:
        The precision; always float32 on CPU.
    """
    if device.type != "cuda" or amp == "off":
        return Precision(None, scaled=False)
    if amp == "bf16" and torch.cuda.is_bf16_supported():
        return Precision(torch.bfloat16, scaled=False)
    return Precision(torch.float16, scaled=True)


def loader_workers(choice: int | Literal["auto"], device: torch.device) -> int:
    """DataLoader worker processes.

    ``auto`` is 0 on CPU, where workers would take cores from the model's own threads, and
    up to 8 (one core left free) on CUDA, where reading tiles must keep up with the GPU.

    Args:
        choice: the configured count or ``auto``.
        device: where the model runs.

    Returns:
        The number of worker processes.
    """
    if choice != "auto":
        return int(choice)
    if device.type != "cuda":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))
