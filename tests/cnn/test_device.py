"""Device selection: auto says what it picked, cuda without a GPU is a clear error."""

import pytest
import torch

from kelp.cnn.device import loader_workers, precision_for, resolve_device
from kelp.errors import DeviceError

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def test_cpu_and_auto(capsys: pytest.CaptureFixture[str]) -> None:
    assert resolve_device("cpu").type == "cpu"
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert f"using {device.type}" in capsys.readouterr().err


@no_gpu
def test_cuda_without_gpu_is_an_error() -> None:
    with pytest.raises(DeviceError, match=r"'cuda' was requested but .* no CUDA GPU.*--device"):
        resolve_device("cuda")


def test_unknown_device() -> None:
    with pytest.raises(DeviceError, match="'auto', 'cpu' or 'cuda'"):
        resolve_device("tpu")  # type: ignore[arg-type]


def test_mixed_precision_only_on_cuda() -> None:
    cpu = torch.device("cpu")
    for amp in ("bf16", "fp16", "off"):
        precision = precision_for(amp, cpu)  # type: ignore[arg-type]
        assert precision.dtype is None
        assert precision.name == "fp32"
    assert loader_workers("auto", cpu) == 0
    assert loader_workers(3, cpu) == 3
