"""`kelp tune`: an Optuna study over one target of a run, resumable, written back as config.

The study lives in ``RUN/tune/<study>/journal.log`` by default: Optuna's journal file
storage, an append-only log guarded by a lock file, which several processes (``--jobs``)
share without the "database is locked" errors SQLite gives concurrent writers; any Optuna
storage URL (``sqlite:///...``, ``postgresql://...``) can be given instead. Rerunning the
same command resumes the study: ``--trials N`` counts every finished trial of the study
(complete or pruned), ``--timeout MIN`` bounds this invocation. A trial that raises is
recorded as failed and the study goes on; Ctrl-C stops at once, and the interrupted trial
(or one left running by a killed process on this host) is marked failed when the study is
next opened, so the study resumes with the next trial.

On a cluster (``--cluster``, :mod:`kelp.cluster`) each of the ``--jobs`` loops is a task: it
runs its trials on one worker, on that worker's threads, against the same storage (the
journal file on a filesystem every worker sees, or a database URL); with one job the trials
run here and their stages send their tiles and folds to the cluster.

After the trials: ``best.toml`` (the best trial's values as a TOML fragment that
``kelp run`` accepts; ``--write-config`` merges it into a copy of the config),
``summary.json`` and ``trials.csv`` (every trial: state, value, per-fold figures, values),
``history.png`` and ``importance.png`` in ``RUN/tune/<study>/``; the run's report shows them.
"""

import csv
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kelp._files import atomic_path
from kelp._progress import say
from kelp.cluster import current, run_tasks
from kelp.errors import ConfigError
from kelp.pipeline.config import RunConfig
from kelp.tune.objective import TrialSetup, apply_values, run_trial
from kelp.tune.space import Space, Target, build_space

if TYPE_CHECKING:
    import optuna
    from optuna.trial import Trial as OptunaTrial

__all__ = ["TuneRequest", "best_fragment", "open_study", "study_name", "tune"]

_HOST = socket.gethostname()


@dataclass(frozen=True)
class TuneRequest:
    """What to tune and for how long.

    Attributes:
        target: ``trees``, ``cnn`` or ``stack``.
        model: the tree model (trees only; default the config's first).
        trials: finished trials the study should hold (counted over every invocation).
        timeout: minutes this invocation may start trials for.
        jobs: trial loops running at once: processes on this machine, or tasks on the
            cluster in use.
        write_config: also write the config with the best values merged in here.
    """

    target: Target
    model: str | None = None
    trials: int | None = None
    timeout: float | None = None
    jobs: int = 1
    write_config: Path | None = None


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ImportError("kelp tune needs Optuna: pip install 'kelp[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # kelp says what a trial did
    return optuna


def study_name(config: RunConfig, request: TuneRequest) -> str:
    """``[tune] study``, else ``<target>`` or ``trees-<model>``."""
    if config.tune.study is not None:
        return config.tune.study
    return f"trees-{request.model}" if request.target == "trees" else request.target


def _storage(config: RunConfig, folder: Path) -> Any:
    """The study's storage: the configured URL or journal file, else the study's journal."""
    optuna = _optuna()
    from optuna.storages.journal import JournalFileBackend

    given = config.tune.storage
    try:
        if given is not None and "://" in given:
            kwargs = {"connect_args": {"timeout": 60}} if given.startswith("sqlite") else {}
            return optuna.storages.RDBStorage(given, engine_kwargs=kwargs)
        path = Path(given) if given is not None else folder / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except Exception as error:  # the drivers raise their own types; one line for the user
        raise ConfigError(
            f"[tune] storage {given!r} cannot be opened ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); give an Optuna storage URL "
            "such as sqlite:///tune.db, or a journal file path"
        ) from None


def open_study(config: RunConfig, request: TuneRequest, folder: Path) -> "optuna.Study":
    """Create or load the study (maximising), marking trials orphaned by a dead process failed."""
    optuna = _optuna()
    study = optuna.create_study(
        storage=_storage(config, folder),
        study_name=study_name(config, request),
        direction="maximize",
        load_if_exists=True,
    )
    target = study.user_attrs.get("target")
    if target is None:
        study.set_user_attr("target", request.target)
        study.set_user_attr("model", request.model)
    elif (target, study.user_attrs.get("model")) != (request.target, request.model):
        raise ConfigError(
            f"study {study.study_name!r} tunes {target} {study.user_attrs.get('model') or ''}"
            f"; give another [tune] study name for --target {request.target}"
        )
    _fail_orphans(study)
    return study


def _fail_orphans(study: "optuna.Study") -> None:
    """Trials left running by a process of this host that is gone: failed, so not counted."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid, host = trial.user_attrs.get("pid"), trial.user_attrs.get("host")
        if host == _HOST and pid is not None and not _alive(int(pid)):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            say(f"trial {trial.number} was interrupted: marked failed")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process starts trials only after opening the study
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finished(study: "optuna.Study") -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _objective(setup: TrialSetup) -> Any:
    optuna = _optuna()

    def objective(trial: "OptunaTrial") -> float:
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", _HOST)
        overrides = setup.space.suggest(trial)

        def report(value: float, fold: int) -> None:
            trial.report(value, fold)
            trial.set_user_attr(f"fold_{fold}", round(value, 6))
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            result = run_trial(setup, trial.number, overrides, report)
        except optuna.TrialPruned:
            raise
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        trial.set_user_attr("per_fold", result.per_fold)
        trial.set_user_attr("seconds", result.seconds)
        return result.value

    return objective


def _announce(study: "optuna.Study", trial: Any) -> None:
    """One line per finished trial."""
    running = {k: v for k, v in trial.user_attrs.items() if k.startswith("fold_")}
    if trial.state.name == "COMPLETE":
        seconds = trial.user_attrs.get("seconds", 0)
        say(f"trial {trial.number}: nested OOF Dice {trial.value:.4f} ({seconds:.0f} s)")
    elif trial.state.name == "PRUNED":
        last = max(running, key=lambda k: int(k.removeprefix("fold_")), default=None)
        where = f" after fold {last.removeprefix('fold_')} ({running[last]:.4f})" if last else ""
        say(f"trial {trial.number}: pruned{where}")
    else:
        error = trial.user_attrs.get("error", "see above")
        say(f"[yellow]warning:[/yellow] trial {trial.number} failed ({error}); going on")


class _FailureStop:
    """Stops the study after :attr:`LIMIT` failed trials in a row (a broken setup, not bad
    luck): failed trials do not count towards ``--trials``."""

    LIMIT = 5

    def __init__(self) -> None:
        self.failures = 0

    def __call__(self, study: "optuna.Study", trial: Any) -> None:
        self.failures = self.failures + 1 if trial.state.name == "FAIL" else 0
        if self.failures >= self.LIMIT:
            say(f"[yellow]warning:[/yellow] {self.LIMIT} trials failed in a row: stopping")
            study.stop()


def _sampler(config: RunConfig, study: "optuna.Study", worker: int) -> Any:
    optuna = _optuna()
    # offset by the study's trials: a resumed study draws new points, not its first ones again
    seed = config.tune.seed + len(study.trials) + 1000 * worker
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.tune.startup_trials)


def _pruner(config: RunConfig) -> Any:
    optuna = _optuna()
    if config.tune.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=config.tune.startup_trials, n_warmup_steps=config.tune.warmup_folds
    )


def _optimize(
    config: RunConfig, values: Mapping[str, Any], request: TuneRequest, folder: Path, worker: int
) -> None:
    """Run trials in this process until the study holds ``trials`` or the time is up."""
    optuna = _optuna()
    study = open_study(config, request, folder)
    study.sampler = _sampler(config, study, worker)
    study.pruner = _pruner(config)
    space = build_space(request.target, request.model, _overrides(config, request.target))
    setup = TrialSetup(values, config, space, folder, config.tune.keep_trials)
    callbacks: list[Any] = [_announce, _FailureStop()]
    if request.trials is not None:
        if _finished(study) >= request.trials:
            return
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        callbacks.append(optuna.study.MaxTrialsCallback(request.trials, states=finished))
    study.optimize(
        _objective(setup),
        timeout=request.timeout * 60 if request.timeout is not None else None,
        catch=(Exception,),  # recorded as failed; the study goes on
        callbacks=callbacks,
    )


def _overrides(config: RunConfig, target: Target) -> dict[str, Any]:
    return dict(getattr(config.tune, target))


def _worker(args: tuple[Path, Mapping[str, Any], TuneRequest, int, int]) -> None:
    """One loop of trials; ``share``: loops sharing this machine's (or worker's) cores."""
    from kelp.pipeline.config import load_run_config

    path, values, request, worker, share = args
    config = load_run_config(path)
    if config.tabular.n_jobs is None:  # the cores shared out between the loops
        from kelp.tabular.models.base import available_cores

        threads = max(1, available_cores() // share)
        values = apply_values(values, {"tabular.n_jobs": threads})
        import torch

        torch.set_num_threads(threads)
    _optimize(config, values, request, _folder(config, request), worker)


def _folder(config: RunConfig, request: TuneRequest) -> Path:
    return config.run_dir / "tune" / study_name(config, request)


def tune(config_path: Path, request: TuneRequest, *, mlflow: bool = False) -> dict[str, Any]:
    """Run the study (see the module docstring); returns ``summary.json``'s content.

    Raises:
        ConfigError: a bad search space, a storage that cannot be opened, a study of another
            target, neither ``trials`` nor ``timeout``, or a model not in ``[tabular]``.
        ImportError: Optuna missing (names the extra).
        InputError: no trial finished.
    """
    from kelp.config import load_toml, validate_config

    values = load_toml(config_path)
    config = validate_config(RunConfig, values, where=str(config_path))
    request = _with_model(config, request)
    if request.trials is None and request.timeout is None:
        raise ConfigError("give a budget: --trials N or --timeout MINUTES")
    if (request.trials is not None and request.trials < 1) or request.jobs < 1:
        raise ConfigError("--trials and --jobs must be at least 1")
    _optuna()
    build_space(request.target, request.model, _overrides(config, request.target))
    folder = _folder(config, request)
    open_study(config, request, folder)  # fails fast: storage, target, orphans
    _prepare(config, config_path, request.target)
    started = time.perf_counter()
    if request.jobs == 1:
        _optimize(config, values, request, folder, 0)
    elif current() is not None:  # each loop a task, on its worker's threads
        jobs = [(config_path, values, request, w, 1) for w in range(request.jobs)]
        for _, future in run_tasks(_worker, jobs):
            future.result()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        jobs = [(config_path, values, request, w, request.jobs) for w in range(request.jobs)]
        with ProcessPoolExecutor(request.jobs, mp_context=context) as pool:
            list(pool.map(_worker, jobs))
    study = open_study(config, request, folder)
    summary = write_outputs(study, config, values, request, folder, time.perf_counter() - started)
    from kelp.pipeline.report import write_report

    write_report(config.run_dir)
    if mlflow or config.tracking.mlflow:
        from kelp.pipeline.tracking import log_study

        summary["mlflow_run_id"] = log_study(config, study.study_name, summary, folder)
    return summary


def _with_model(config: RunConfig, request: TuneRequest) -> TuneRequest:
    from dataclasses import replace

    if request.target != "trees":
        if request.model is not None:
            raise ConfigError(f"--model is for --target trees, not {request.target}")
        return request
    model = request.model or config.tabular.models[0]
    if model not in config.tabular.models:
        from kelp.errors import unknown_name

        raise unknown_name("tree model of [tabular] models", model, config.tabular.models)
    return replace(request, model=model)


def _prepare(config: RunConfig, config_path: Path, target: Target) -> None:
    """Bring the run up to what the target's trials read (stages already done are skipped)."""
    from kelp.pipeline.run import run_pipeline

    needs = ["folds", "features"] + (["trees", "cnn"] if target == "stack" else [])
    for stage in needs:
        run_pipeline(config, config_path.read_text(), only=stage)  # type: ignore[arg-type]


def best_fragment(space: Space, params: Mapping[str, Any]) -> dict[str, Any]:
    """The best trial's values as nested TOML tables."""
    return apply_values({}, space.values(params))


def write_outputs(
    study: "optuna.Study",
    config: RunConfig,
    values: Mapping[str, Any],
    request: TuneRequest,
    folder: Path,
    seconds: float,
) -> dict[str, Any]:
    """``best.toml``, ``summary.json``, ``trials.csv``, the plots and ``--write-config``."""
    import tomli_w
    from optuna.trial import TrialState

    from kelp.errors import InputError

    space = build_space(request.target, request.model, _overrides(config, request.target))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise InputError(
            f"study {study.study_name!r}: no trial finished (see the failures above); "
            f"its trials are in {folder}"
        )
    best = study.best_trial
    fragment = best_fragment(space, best.params)
    header = (
        f"# kelp tune --target {request.target}"
        + (f" --model {request.model}" if request.model else "")
        + f": study {study.study_name}, trial {best.number}, nested OOF Dice {best.value:.6f}\n"
    )
    with atomic_path(folder / "best.toml") as tmp:
        tmp.write_text(header + tomli_w.dumps(fragment))
    if request.write_config is not None:
        merged = apply_values(values, space.values(best.params))
        merged["name"] = f"{config.name}-tuned"
        with atomic_path(request.write_config) as tmp:
            tmp.write_text(header + tomli_w.dumps(merged))
        say(f"wrote {request.write_config} (run name {merged['name']!r})")
    trials = [_trial_row(t) for t in study.trials]
    summary = {
        "study": study.study_name,
        "target": request.target,
        "model": request.model,
        "objective": "nested out-of-fold global Dice (each fold at the threshold chosen on "
        "the other folds)",
        "space": space.describe(),
        "best": {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "per_fold": best.user_attrs.get("per_fold"),
        },
        "counts": {s.name.lower(): sum(t["state"] == s.name for t in trials) for s in TrialState},
        "seconds": round(seconds, 1),
        "trials": trials,
        "best_toml": str(folder / "best.toml"),
    }
    summary["importance"] = _plots(study, folder)
    with atomic_path(folder / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))
    _write_csv(folder / "trials.csv", trials)
    return summary


def _trial_row(trial: Any) -> dict[str, Any]:
    folds = sorted(k for k in trial.user_attrs if k.startswith("fold_"))
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "seconds": trial.user_attrs.get("seconds"),
        "running": {k.removeprefix("fold_"): trial.user_attrs[k] for k in folds},
        "params": trial.params,
    }


def _write_csv(path: Path, trials: list[dict[str, Any]]) -> None:
    names = sorted({p for t in trials for p in t["params"]})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", "seconds", *names])
        for t in trials:
            params = [t["params"].get(n, "") for n in names]
            writer.writerow([t["number"], t["state"], t["value"], t["seconds"], *params])


def _plots(study: "optuna.Study", folder: Path) -> dict[str, float] | None:
    """``history.png`` always; ``importance.png`` and the importances (fANOVA) when two or
    more complete trials vary something."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental plots; few trials per regime
        _save(plots.plot_optimization_history(study), folder / "history.png", plt)
        try:
            importance = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # too few trials, or nothing varied
            importance = {}
        if not importance:
            (folder / "importance.png").unlink(missing_ok=True)
            return None
        _save(plots.plot_param_importances(study), folder / "importance.png", plt)
    return {k: round(float(v), 4) for k, v in importance.items()}


def _save(axes: Any, path: Path, plt: Any) -> None:
    figure = axes.figure
    figure.set_size_inches(7, 4)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
