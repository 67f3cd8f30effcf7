"""Compute devices: the one vocabulary every stage's config uses, and a torch-free GPU check.

A stage's config says ``device = "auto" | "cpu" | "cuda"``. ``"auto"`` takes a GPU only
when the stage's library can really use one here and otherwise falls back to the CPU,
saying what it picked; ``"cuda"`` on a machine without a usable GPU is an error
(:class:`DeviceError`), never a silent CPU run.

:func:`visible_gpus` asks ``nvidia-smi`` (which ships with the NVIDIA driver), so it works
without torch or CUDA Python packages; each library then confirms with its own check.
"""

import functools
import os
import shutil
import subprocess
from typing import Literal

__all__ = ["Device", "ResolvedDevice", "visible_gpus"]

Device = Literal["auto", "cpu", "cuda"]
ResolvedDevice = Literal["cpu", "cuda"]


@functools.cache
def visible_gpus() -> int:
    """Number of NVIDIA GPUs this process may use (0 without a driver).

    Honours ``CUDA_VISIBLE_DEVICES`` when it hides every GPU (empty or ``-1``), as CUDA
    libraries do. The answer is cached for the life of the process.

    Returns:
        The number of GPUs ``nvidia-smi -L`` lists, or 0.
    """
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return 0
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    if listing.returncode != 0:
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
