"""Device mapping per library and the auto/cuda/cpu decisions, without a GPU."""

import pytest

from kelp import devices as shared
from kelp.errors import DeviceError
from kelp.tabular import devices
from kelp.tabular.config import MODEL_NAMES
from kelp.tabular.registry import create_model


@pytest.mark.parametrize(
    ("name", "cpu", "cuda"),
    [
        ("lightgbm", {"device_type": "cpu"}, {"device_type": "gpu"}),
        ("xgboost", {"device": "cpu", "tree_method": "hist"}, {"device": "cuda"}),
        ("catboost", {"task_type": "CPU"}, {"task_type": "GPU"}),
        ("random_forest", {"device": "cpu", "num_parallel_tree": 32}, {"device": "cuda"}),
    ],
)  # fmt: skip
def test_device_maps_to_library_parameters(
    name: str, cpu: dict[str, object], cuda: dict[str, object]
) -> None:
    on_cpu = create_model(name, device="cpu", n_jobs=3, seed=5).library_params()
    on_gpu = create_model(name, device="cuda", n_jobs=3, seed=5).library_params()
    assert cpu.items() <= on_cpu.items()
    assert cuda.items() <= on_gpu.items()
    if "device" in on_gpu:  # XGBoost >= 3.1 selects the GPU by device with the hist method
        assert on_gpu["tree_method"] == "hist"
    threads = {"lightgbm": "num_threads", "catboost": "thread_count"}.get(name, "nthread")
    seed = {"lightgbm": "seed", "catboost": "random_seed"}.get(name, "seed")
    assert on_cpu[threads] == 3
    assert on_cpu[seed] == 5


def test_overrides_win_over_defaults_and_device() -> None:
    params = create_model("lightgbm", {"num_leaves": 5, "device_type": "cpu"}, device="cuda")
    assert params.library_params()["num_leaves"] == 5
    assert params.library_params()["device_type"] == "cpu"


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[bool, str]]:
    """One visible GPU; each library's probe answers from the returned dict."""
    answers = dict.fromkeys(MODEL_NAMES, (True, "CUDA"))
    monkeypatch.setattr(devices, "visible_gpus", lambda: 1)
    probes = {name: (lambda name=name: answers[name]) for name in MODEL_NAMES}
    monkeypatch.setattr(devices, "_PROBES", probes)
    return answers


@pytest.mark.usefixtures("no_gpu")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_no_gpu_auto_falls_back_and_cuda_refuses(name: str) -> None:
    assert devices.resolve_device(name, "auto") == "cpu"  # type: ignore[arg-type]
    assert devices.resolve_device(name, "cpu") == "cpu"  # type: ignore[arg-type]
    with pytest.raises(
        DeviceError, match=r"cannot train on a GPU here: no NVIDIA GPU.*--device auto"
    ):
        devices.resolve_device(name, "cuda")  # type: ignore[arg-type]


def test_gpu_auto_picks_it_and_failed_probe_falls_back(
    fake_gpu: dict[str, tuple[bool, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_gpu["lightgbm"] = (False, "LightGBM's OpenCL learner failed (No OpenCL device found)")
    picked = devices.resolve_devices(MODEL_NAMES, "auto")
    assert picked == {
        "lightgbm": "cpu",
        "xgboost": "cuda",
        "catboost": "cuda",
        "random_forest": "cuda",
    }
    said = capsys.readouterr().err
    assert "lightgbm: training on CPU (LightGBM's OpenCL learner failed" in said
    assert "xgboost: training on GPU (CUDA)" in said
    assert devices.resolve_devices(["xgboost"], "cpu") == {"xgboost": "cpu"}
    with pytest.raises(DeviceError, match="lightgbm cannot train on a GPU here: LightGBM's OpenCL"):
        devices.resolve_devices(MODEL_NAMES, "cuda")


def test_real_probes_are_safe_without_a_gpu() -> None:
    # This machine (and CI) has no GPU: probing must answer, never crash or hang.
    if shared.visible_gpus():
        pytest.skip("a GPU is visible here")
    for name in MODEL_NAMES:
        usable, detail = devices.gpu_usable(name)
        assert not usable
        assert "no NVIDIA GPU" in detail
    usable, detail = devices._lightgbm_gpu()
    assert not usable
    assert "OpenCL" in detail
    assert devices._catboost_gpu() == (False, "catboost sees no CUDA device")


def test_cuda_visible_devices_hides_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    shared.visible_gpus.cache_clear()
    try:
        assert shared.visible_gpus() == 0
    finally:
        shared.visible_gpus.cache_clear()
