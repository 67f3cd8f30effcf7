"""Which device each tree library trains on: ``auto`` probes, ``cuda`` insists, ``cpu`` is.

``auto`` takes the GPU only when the library can really train there: a GPU is visible
(``nvidia-smi``) and the library's own check passes. XGBoost needs a CUDA build and a tiny
trial fit (with ``device="cuda"`` and no GPU it only warns and trains on the CPU, so its
own behaviour cannot be trusted to tell); CatBoost counts GPUs itself; LightGBM's OpenCL
learner gets a tiny trial fit, because the PyPI wheel has it built in whether or not an
OpenCL driver is installed. The random forest is grown by XGBoost and follows its probe.
Each probe runs once per process.
"""

import functools
from collections.abc import Callable, Sequence

import numpy as np

from kelp._progress import say
from kelp.devices import Device, ResolvedDevice, visible_gpus
from kelp.errors import DeviceError
from kelp.tabular.config import ModelName

__all__ = ["gpu_usable", "resolve_device", "resolve_devices"]


def _trial_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.float32)


@functools.cache
def _xgboost_gpu() -> tuple[bool, str]:
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA"):
        return False, "this xgboost build has no CUDA support"
    x, y = _trial_data()
    try:
        xgb.train(
            {"device": "cuda", "tree_method": "hist", "objective": "binary:logistic"},
            xgb.QuantileDMatrix(x, y),
            num_boost_round=1,
        )
    except xgb.core.XGBoostError as error:
        return False, f"xgboost's CUDA trial fit failed ({str(error).splitlines()[0]})"
    return True, "CUDA"


@functools.cache
def _catboost_gpu() -> tuple[bool, str]:
    from catboost.utils import get_gpu_device_count

    if get_gpu_device_count() < 1:
        return False, "catboost sees no CUDA device"
    return True, "CUDA"


@functools.cache
def _lightgbm_gpu() -> tuple[bool, str]:
    import lightgbm as lgb

    x, y = _trial_data()
    params = {"device_type": "gpu", "objective": "binary", "verbosity": -1, "num_leaves": 4}
    try:
        lgb.train(params, lgb.Dataset(x, y), num_boost_round=1)
    except lgb.basic.LightGBMError as error:
        return False, f"LightGBM's OpenCL learner failed ({str(error).splitlines()[0]})"
    return True, "OpenCL"


_PROBES: dict[ModelName, Callable[[], tuple[bool, str]]] = {
    "lightgbm": _lightgbm_gpu,
    "xgboost": _xgboost_gpu,
    "catboost": _catboost_gpu,
    "random_forest": _xgboost_gpu,
}


def gpu_usable(name: ModelName) -> tuple[bool, str]:
    """Whether model ``name`` can train on a GPU here.

    Returns:
        ``(usable, detail)``: the backend (``"CUDA"``/``"OpenCL"``) or why not.
    """
    if visible_gpus() == 0:
        return False, "no NVIDIA GPU is visible (nvidia-smi lists none)"
    return _PROBES[name]()


def resolve_device(name: ModelName, requested: Device) -> ResolvedDevice:
    """The device model ``name`` trains on, for a requested ``auto | cpu | cuda``.

    Raises:
        DeviceError: ``cuda`` requested but no GPU is visible, or this library cannot use
            it (the message says why and suggests ``auto``).
    """
    if requested == "cpu":
        return "cpu"
    usable, detail = gpu_usable(name)
    if usable:
        return "cuda"
    if requested == "auto":
        return "cpu"
    raise DeviceError(
        f"device 'cuda' was requested but {name} cannot train on a GPU here: {detail}. "
        "Use --device auto to fall back to the CPU where needed, or --device cpu."
    )


def resolve_devices(
    names: Sequence[ModelName], requested: Device
) -> dict[ModelName, ResolvedDevice]:
    """Resolve every model's device before any training starts, and say what was picked.

    Raises:
        DeviceError: as :func:`resolve_device`, for the first model that cannot comply.
    """
    picked = {name: resolve_device(name, requested) for name in names}
    for name, device in picked.items():
        if device == "cuda":
            why = f"GPU ({gpu_usable(name)[1]})"
        elif requested == "cpu":
            why = "CPU (requested)"
        else:
            why = f"CPU ({gpu_usable(name)[1]})"
        say(f"{name}: training on {why}")
    return picked
