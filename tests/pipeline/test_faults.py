"""Fault injection: `kelp run` SIGKILLed inside each long stage, rerun, equals a clean run.

For each of features, trees, cnn, stack and predict, a fresh run folder runs `kelp run` in a
subprocess with ``KELP_KILL_AFTER`` (the test hook of :mod:`kelp._files`) set to die right
after a fixed write inside that stage. The test checks that the process died by SIGKILL, that
``run.json`` then says that stage is running (the truth at the moment of death), reruns
without the hook and compares every file of the run folder with an uninterrupted run:

- bytes, for Parquet tiles, maps (``.npy``), masks (``.tif``), tree models, CNN weights, the
  meta-model, CSVs and PNGs: all are deterministic on CPU; where bytes differ the message says
  how the content differs (rows, pixels, max abs difference);
- JSON (and the CNN's ``last/state.pt``) after dropping wall-clock fields (``seconds``,
  ``*_seconds``, ``started``...), the writer's git commit and the folds the tree stage's
  manifest says *this* call trained, and replacing the run folder's path;
- ``log.csv`` without its ``seconds`` column, ``submission.tar`` member by member;
- ``run.json`` on its own (stage keys hash the dataset files' mtimes, so they differ between
  any two run folders): every stage done, the first start kept; ``report.html`` is not
  compared (it shows wall times).

Nothing hidden may be left in the run folder afterwards: no atomic temp file
(``.<name>.<random>.tmp``), no CNN checkpoint temp or ``.old`` folder, no ``.partial.json``.

``benchmarks/faults.py`` sweeps many kill points per stage with the same helpers.
"""

import contextlib
import csv
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kelp._files import KILL_ENV, _KillPoint

pytestmark = [pytest.mark.faults, pytest.mark.slow]

NAME = "faults"
LONG_STAGES = ("features", "trees", "cnn", "stack", "predict")
STAGES = ("folds", *LONG_STAGES)

CONFIG = """\
name = "{name}"
runs_dir = "{runs}"

[data.synth]
tiles = 20
size = 48
seed = 3
test_fraction = 0.2

[folds]
k = 2

[features]
indices = ["NDVI", "NDWI"]
workers = 1  # the Parquet tiles are renamed in this process: a deterministic kill point
[features.filters]
channels = ["nir"]
sigmas = [1.0]
[features.sampling]
n_random = 100

[tabular]
models = ["lightgbm", "xgboost"]
device = "cpu"
max_rounds = 15
early_stopping_rounds = 5
n_jobs = 1
[tabular.params.lightgbm]
num_leaves = 7
min_data_in_leaf = 5
[tabular.params.xgboost]
max_depth = 3

[cnn]
channels = ["swir", "nir", "red", "NDVI", "dem_water"]
encoder = "resnet18"
encoder_depth = 3
decoder_channels = [16, 8, 8]
epochs = 2
batch_size = 4
patience = 0
tta = false
device = "cpu"
num_workers = 0

[stacking]
compare = ["logistic"]
grid_tiles = 3
[stacking.postprocess]
coarse_step = 0.1
fine_step = 0.05
min_areas = [0, 3]

[predict]
device = "cpu"
"""

# One kill point per stage for CI, each chosen to exercise that stage's resume logic:
KILLS = {
    # 6 of the 16 train tiles written: the rerun reads them back and builds the other 10
    "features": "features/table:6",
    # fold 0 finished (models, OOF maps, metrics.json), fold 1's LightGBM model saved but not
    # its metrics: fold 0 is kept, fold 1 redone
    "trees": "tabular:12",
    # fold 0 finished; fold 1's epoch 2 logged, its `last/` still epoch 1: fold 1 resumes from
    # `last/` (weights, optimiser, schedule, RNG states) and redoes epoch 2
    "cnn": "cnn/fold=1/log.csv:2",
    # the fused OOF maps of fold 0 (and the partial marker) written, nothing else
    "stack": "stacking/oof:9",
    # the partial marker and 2 of the 4 test masks written: the rerun keeps those 2
    "predict": "predictions:3",
}
# Every write of each stage, for sweeps (`benchmarks/faults.py`).
STAGE_PATTERNS = {
    "features": "features",
    "trees": "tabular|oof/lightgbm|oof/xgboost",
    "cnn": "cnn",
    "stack": "stacking",
    "predict": "predictions",
}

# what each stage writes (path prefixes in the run folder; run.json and report.html: all)
OUTPUTS = {
    "folds": ("run.json", "report.html", "config.", "data/", "folds.csv", "tile_stats.csv"),
    "features": ("features/",),
    "trees": ("tabular/", "oof/lightgbm/", "oof/xgboost/"),
    "cnn": ("cnn/", "oof/cnn/"),
    "stack": ("stacking/",),
    "predict": ("predictions/",),
}
# wall-clock fields of JSON manifests (and of the CNN's training state), and the git commit
# of the invocation that wrote a manifest (it moves when someone commits between two runs)
VOLATILE = frozenset(
    {"seconds", "train_seconds", "predict_seconds", "invocation_seconds", "peak_rss_mb",
     "started", "invoked", "finished", "git", "git_commit"}
)  # fmt: skip
SKIPPED = frozenset({"run.json", "report.html"})  # checked on their own / shows wall times
# fields that describe the invocation that wrote the file, not the artifact: the tree stage's
# manifest lists the folds trained by *this* call (a resumed call trains fewer)
INVOCATION_FIELDS = {"tabular/manifest.json": frozenset({"trained"})}


@dataclass
class Invocation:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def tail(self, n: int = 3000) -> str:
        return f"rc={self.returncode}\nstdout:\n{self.stdout[-n:]}\nstderr:\n{self.stderr[-n:]}"


def write_config(folder: Path, name: str = NAME) -> Path:
    """The tiny run config in ``folder`` (its run goes to ``folder/runs/<name>``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "faults.toml"
    path.write_text(CONFIG.format(name=name, runs=(folder / "runs").resolve()))
    return path


def run_dir(config: Path, name: str = NAME) -> Path:
    return config.parent.resolve() / "runs" / name


def kelp_run(
    config: Path,
    kill: str | None = None,
    options: tuple[str, ...] = (),
    launcher: tuple[str, ...] = ("-m", "kelp"),
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> Invocation:
    """`kelp run CONFIG [options]` in a subprocess (``python <launcher> run ...``),
    single-threaded, with the kill hook if given and ``env`` added to the environment."""
    full = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    full.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", COLUMNS="100", **(env or {}))  # fmt: skip
    if kill is not None:
        full[KILL_ENV] = kill
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *launcher, "run", str(config), *options],
        cwd=config.parent,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Invocation(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def read_run_json(run: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run / "run.json").read_text())
    return loaded


def run_json_at_kill(record: dict[str, Any], stage: str) -> list[str]:
    """What is wrong with ``run.json`` of a run killed inside ``stage`` (empty: the truth)."""
    problems = []
    stages = record.get("stages", {})
    before = STAGES[: STAGES.index(stage)]
    for earlier in before:
        if stages.get(earlier, {}).get("status") != "done":
            problems.append(f"{earlier}: {stages.get(earlier)} (expected done)")
    if stages.get(stage, {}).get("status") != "running":
        problems.append(f"{stage}: {stages.get(stage)} (expected running)")
    later = [s for s in stages if s not in (*before, stage)]
    if later:
        problems.append(f"stages after {stage} recorded: {later}")
    if "finished" in record:
        problems.append("a killed run says it finished")
    return problems


def run_json_after_rerun(
    record: dict[str, Any], killed: dict[str, Any], last: str = STAGES[-1]
) -> list[str]:
    """What is wrong with ``run.json`` after the rerun that finished the run (up to ``last``)."""
    problems = []
    stages = record.get("stages", {})
    if list(stages) != list(STAGES[: STAGES.index(last) + 1]):
        problems.append(f"stages {list(stages)}")
    problems += [f"{s}: {e}" for s, e in stages.items() if e.get("status") != "done"]
    if "finished" not in record:
        problems.append("no 'finished'")
    if record.get("started") != killed.get("started"):
        problems.append(f"'started' {record.get('started')} != first start {killed.get('started')}")
    return problems


def leftovers(run: Path) -> list[str]:
    """Hidden files or folders under ``run``: atomic temp files (``.<name>.<random>.tmp``),
    checkpoint temp/``.old`` folders, partial markers. A finished run has none."""
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*"))


def differences(reference: Path, run: Path, last: str = STAGES[-1]) -> list[str]:
    """Every way the files of run folder ``run`` differ from those of ``reference``; only the
    outputs of the stages up to ``last`` are compared."""
    later = tuple(p for s in STAGES[STAGES.index(last) + 1 :] for p in OUTPUTS[s])

    def listing(root: Path) -> set[str]:  # a file no stage owns is always compared
        names = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return {n for n in names if not n.startswith(later)}

    files, expected = listing(run), listing(reference)
    out = [f"{name}: missing" for name in sorted(expected - files)]
    out += [f"{name}: not in the reference" for name in sorted(files - expected)]
    for name in sorted(files & expected):
        if name not in SKIPPED:
            out += [f"{name}: {d}" for d in _file_differences(reference, run, name)]
    return out


def _file_differences(reference: Path, run: Path, name: str) -> list[str]:
    a, b = reference / name, run / name
    if name.endswith(".json"):
        drop = INVOCATION_FIELDS.get(name, frozenset())
        x, y = (_unroot(json.loads(p.read_text()), r) for p, r in ((a, reference), (b, run)))
        if isinstance(x, dict) and isinstance(y, dict):
            x, y = ({k: v for k, v in d.items() if k not in drop} for d in (x, y))
        return _diff(x, y)
    if name.endswith(".toml"):
        same = a.read_text().replace(str(reference.parent), "<RUNS>") == b.read_text().replace(
            str(run.parent), "<RUNS>"
        )
        return [] if same else ["text differs"]
    if name.endswith("log.csv"):
        return _diff(_csv_without(a, "seconds"), _csv_without(b, "seconds"))
    if name.endswith(".tar"):
        return _diff(_tar_members(a), _tar_members(b))
    if name.endswith("state.pt"):
        import torch

        return _diff(torch.load(a, weights_only=False), torch.load(b, weights_only=False))
    if a.read_bytes() == b.read_bytes():
        return []
    return [_content_difference(a, b)]


def _content_difference(a: Path, b: Path) -> str:
    """Bytes differ: say how the content differs (or that it does not)."""
    if a.suffix == ".npy":
        x, y = np.load(a), np.load(b)
        if x.shape != y.shape:
            return f"map shape {x.shape} != {y.shape}"
        diff = np.abs(x.astype(np.float64) - y)
        return f"map differs at {int((diff > 0).sum())} pixels, max abs diff {diff.max():.3g}"
    if a.suffix == ".tif":
        import rasterio

        with rasterio.open(a) as fa, rasterio.open(b) as fb:
            x, y = fa.read(), fb.read()
        if x.shape != y.shape:
            return f"raster shape {x.shape} != {y.shape}"
        n = int((x != y).sum())
        return f"mask differs at {n} pixels" if n else "bytes differ, pixels equal (tags?)"
    if a.suffix == ".parquet":
        import pyarrow.parquet as pq

        keys = ["tile_id", "row", "col"]
        x, y = pq.read_table(a), pq.read_table(b)
        if x.schema != y.schema:
            return f"parquet schema differs:\n{x.schema}\nvs\n{y.schema}"
        x, y = (
            x.sort_by([(k, "ascending") for k in keys]),
            y.sort_by([(k, "ascending") for k in keys]),
        )
        if not x.equals(y):
            return f"parquet rows differ ({x.num_rows} vs {y.num_rows} rows)"
        if x.schema.metadata != y.schema.metadata:
            return "parquet metadata (key, tile summary) differs"
        return "bytes differ, rows and metadata equal"
    return f"bytes differ ({a.stat().st_size} vs {b.stat().st_size} bytes)"


def _unroot(value: Any, root: Path) -> Any:
    """JSON value with the run folder's paths replaced and wall-clock fields dropped."""
    if isinstance(value, dict):
        return {k: _unroot(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_unroot(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(str(root.parent), "<RUNS>")
    return value


def _csv_without(path: Path, column: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != column} for row in csv.DictReader(f)]


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        out = {}
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            out[member.name] = extracted.read() if extracted is not None else b""
        return out


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which two nested values differ (dicts, lists, arrays, tensors, scalars);
    wall-clock keys are ignored."""
    here = where or "(top)"
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        ka, kb = set(a) - VOLATILE, set(b) - VOLATILE
        out += [f"{where}/{k}: missing" for k in sorted(map(str, ka - kb))]
        out += [f"{where}/{k}: unexpected" for k in sorted(map(str, kb - ka))]
        for k in [k for k in a if k in ka & kb]:
            out += _diff(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{here}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{where}[{i}]")]
    if hasattr(a, "detach") and hasattr(b, "detach"):  # torch tensors
        a, b = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=True):
            return [f"{here}: arrays differ ({x.dtype}{x.shape} vs {y.dtype}{y.shape})"]
        return []
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return []
    return [] if a == b else [f"{here}: {a!r} != {b!r}"]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_reference(folder: Path, **how: Any) -> Path:
    """An uninterrupted run in ``folder`` (``how``: more arguments of :func:`kelp_run`); its
    run folder."""
    config = write_config(folder)
    done = kelp_run(config, **how)
    assert done.returncode == 0, done.tail()
    return run_dir(config)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of one uninterrupted run, shared by the xdist workers (do not modify)."""
    base = tmp_path_factory.getbasetemp()
    # under xdist each worker has its own base; their parent is the session's
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "faults-reference"
    with _locked(root / "faults-reference.lock"):
        if not (folder / "done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            run = build_reference(folder)
            (folder / "done").write_text(str(run))
    return Path((folder / "done").read_text())


@pytest.mark.parametrize("stage", LONG_STAGES)
def test_sigkill_inside_stage_then_rerun_equals_clean_run(
    stage: str, reference: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    run = run_dir(config)
    # the hook matches components anywhere in the absolute path: not in the run folder's own
    assert not _KillPoint(KILLS[stage]).matches(run), f"{run} matches {KILLS[stage]}"
    killed = kelp_run(config, kill=KILLS[stage])
    assert killed.returncode == -signal.SIGKILL, f"{KILLS[stage]} not reached?\n{killed.tail()}"
    at_kill = read_run_json(run)
    assert run_json_at_kill(at_kill, stage) == []

    resumed = kelp_run(config)
    assert resumed.returncode == 0, resumed.tail()
    assert "Traceback" not in resumed.stderr + resumed.stdout, resumed.tail()
    assert run_json_after_rerun(read_run_json(run), at_kill) == []
    assert leftovers(run) == []
    assert differences(reference, run) == []


def test_kill_hook_counts_matching_renames_in_process(tmp_path: Path) -> None:
    script = (
        "from kelp._files import atomic_path\n"
        "for i in range(5):\n"
        "    for sub in ('a', 'b'):\n"
        "        with atomic_path(f'out/{sub}/table/{i}.txt') as tmp:\n"
        "            tmp.write_text(str(i))\n"
    )
    env = {**os.environ, KILL_ENV: "b/table:3"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=False)
    assert done.returncode == -signal.SIGKILL
    written = sorted(
        str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.txt")
    )
    assert written == [f"{s}/table/{i}.txt" for s in "ab" for i in range(3)]  # died after b/2
    assert leftovers(tmp_path / "out") == []

    env[KILL_ENV] = "b/table:3:before"
    shutil.rmtree(tmp_path / "out")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=False)
    assert done.returncode == -signal.SIGKILL
    assert not (tmp_path / "out/b/table/2.txt").exists()
    [temp] = leftovers(tmp_path / "out")  # complete, never renamed onto its final name
    assert temp.startswith("b/table/.2.txt.")
    assert temp.endswith(".tmp")

    env[KILL_ENV] = "nothing/matches:1"
    shutil.rmtree(tmp_path / "out")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True)
