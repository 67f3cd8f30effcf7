"""`benchmarks/gpu_check.sh` where CUDA is hidden: it prints the environment and skips, or
fails with ``--require-gpu``. (Its GPU steps run on a machine with one.)"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def gpu_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "KELP_PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_skips_without_cuda() -> None:
    done = gpu_check()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "nvidia-smi" in out
    for library in ("python", "torch", "xgboost", "lightgbm", "catboost"):
        assert f"\n{library}" in out
    assert "torch.cuda.is_available() = False" in out or "torch: not importable" in out
    assert "no CUDA device" in out
    assert out.rstrip().endswith("summary: skipped: no CUDA device")


@pytest.mark.slow
def test_require_gpu_fails_without_cuda() -> None:
    done = gpu_check("--require-gpu")
    assert done.returncode == 2
    assert "summary: skipped: no CUDA device" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--on-cpu", "--require-gpu"], "contradict"),
        (["--frobnicate"], "unknown option --frobnicate"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    done = gpu_check(*args)
    assert done.returncode == 2
    assert message in done.stderr
