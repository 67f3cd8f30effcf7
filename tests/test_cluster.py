"""`[cluster]` without a cluster: addresses, the config, and the errors that come before any
work (dask missing, no scheduler at the address). The LocalCluster tests are in
``tests/test_cluster_local.py``."""

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kelp import cluster
from kelp.cli import app
from kelp.cluster import ClusterConfig, ClusterError, connect, parse_address
from kelp.config import validate_config
from kelp.errors import ConfigError
from kelp.pipeline.config import RunConfig
from tests._imports import loaded_after

# a port nothing listens on: connecting is refused at once, and the client retries until
# its timeout
CLOSED = "tcp://127.0.0.1:9"


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("local:1", ("local", 1)),
        ("local:16", ("local", 16)),
        ("tcp://10.0.0.5:8786", ("remote", "tcp://10.0.0.5:8786")),
        ("tls://scheduler.example:8786", ("remote", "tls://scheduler.example:8786")),
    ],
)
def test_parse_address(address: str, parsed: tuple[str, object]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["local:0", "local:", "local:two", "10.0.0.5:8786", "tcp://"])
def test_bad_address_is_a_config_error_naming_the_key(address: str) -> None:
    with pytest.raises(ConfigError, match=r"cluster\.address.*local:N") as error:
        validate_config(RunConfig, {"cluster": {"address": address}}, where="run.toml")
    assert "\n" not in str(error.value)
    assert address in str(error.value)


def test_bad_threads_and_timeout_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"cluster\.threads_per_worker"):
        validate_config(RunConfig, {"cluster": {"threads_per_worker": 0}})
    with pytest.raises(ConfigError, match=r"cluster\.timeout"):
        validate_config(RunConfig, {"cluster": {"timeout": 0}})


def test_cluster_is_not_part_of_any_stage_key() -> None:
    plain = RunConfig()
    on_cluster = RunConfig(cluster=ClusterConfig(address="local:2"))
    for stage in ("folds", "features", "trees", "cnn", "stack", "predict"):
        assert plain.section(stage) == on_cluster.section(stage)  # type: ignore[arg-type]


def test_no_address_needs_no_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    with connect(ClusterConfig()) as client:
        assert client is None
        assert cluster.current() is None
    with connect(None) as client:
        assert client is None
    assert cluster.worker_threads() is None


def test_stages_without_a_cluster_import_no_dask() -> None:
    code = (
        "from kelp.pipeline.config import RunConfig\n"
        "from kelp.cluster import connect\n"
        "import kelp.features.build, kelp.tabular.train, kelp.cnn.train\n"
        "with connect(RunConfig().cluster):\n    pass\n"
    )
    assert loaded_after(code, ("dask", "distributed")) == []


def test_dask_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with (
        pytest.raises(ImportError, match=r"local:2.*pip install 'kelp\[dask\]'"),
        connect(ClusterConfig(address="local:2")),
    ):
        pass
    assert cluster.current() is None


def test_unreachable_scheduler_fails_within_its_timeout() -> None:
    started = time.perf_counter()
    with (
        pytest.raises(ClusterError, match=r"no Dask scheduler answered at tcp://127\.0\.0\.1:9"),
        connect(ClusterConfig(address=CLOSED, timeout=1)),
    ):
        pass
    assert time.perf_counter() - started < 15
    assert cluster.current() is None


def test_run_tasks_needs_a_cluster() -> None:
    with pytest.raises(RuntimeError, match="needs a cluster"):
        next(cluster.run_tasks(str, [1]))


def test_kelp_run_with_unreachable_cluster_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f'name = "x"\nruns_dir = "{tmp_path / "runs"}"\n[cluster]\ntimeout = 1\n')
    result = CliRunner().invoke(app, ["run", str(config), "--cluster", CLOSED])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no Dask scheduler answered" in lines[0], result.output
    assert "within 1 s" in result.output  # the file's [cluster] timeout, --cluster on top
    assert "nothing was written" in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["build-features", "train-trees", "train-cnn"])
def test_stage_commands_refuse_a_bad_cluster_option(
    command: str, tiny_dataset: Callable[..., Path], tmp_path: Path
) -> None:
    root = tiny_dataset(n_areas=2, dates=1, n_test=0)
    where = ["--folds", str(tmp_path / "folds.csv")] if command == "build-features" else []
    if command != "build-features":
        where = ["--run", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [command, str(root), *where, "--cluster", "local:0"])
    assert result.exit_code == 1, result.output
    assert "--cluster" in result.output and "local:N" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_predict_refuses_a_bad_cluster_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["predict", "--data", str(tmp_path), "--run", str(tmp_path / "run"), "--cluster", "x"],
    )
    assert result.exit_code == 1, result.output
    assert "--cluster" in result.output and "local:N" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_tune_refuses_a_bad_cluster_option(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(f'name = "x"\nruns_dir = "{tmp_path / "runs"}"\n')
    options = ["--target", "trees", "--trials", "1", "--cluster", "local:0"]
    result = CliRunner().invoke(app, ["tune", str(config), *options])
    assert result.exit_code == 1, result.output
    assert "--cluster" in result.output and "local:N" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
