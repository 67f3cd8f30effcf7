"""Sweep kill points: SIGKILL `kelp run` after the n-th write of a stage, rerun, compare.

    python benchmarks/faults.py --out /tmp/faults --n 10             # n = 1..10, every stage
    python benchmarks/faults.py --stages cnn,predict --n 40 --jobs 2
    python benchmarks/faults.py --when before --n 5                  # die before the rename

The harness of ``tests/pipeline/test_faults.py`` (its tiny config, `kelp run` in a
subprocess, the comparison of every file with an uninterrupted run), over many kill points:
for each stage and n = 1, 1 + step, ... <= N, `kelp run` runs with
``KELP_KILL_AFTER="<every write of the stage>:<n>"`` (``--when before``: die just before that
rename, leaving its complete temporary file behind), must die by SIGKILL with ``run.json``
saying the stage is running, is rerun without the hook and must finish (exit 0) with every
artifact equal to the reference, ``run.json`` all done and no hidden file left. A stage stops
at the first n that the run never reaches (it has fewer writes).

To save time each stage's trials start from a snapshot of the run folder taken when the
stage starts (the run killed right after ``run.json`` marks the stage running; file times
kept, so the stage keys stay valid), restored at the same path for every trial: the same
state a fresh run reaches, without recomputing the earlier stages; ``--fresh`` runs every
trial from an empty folder instead, like the tests. Stages run in parallel (``--jobs``), the
trials of one stage one after the other; ``--stage-only`` reruns just the killed stage
(``kelp run --only``) and compares the outputs up to it (later stages are a deterministic
function of those, and their reruns are most of a trial's time). Prints one row per stage:
kill points tried, resumed OK (rerun exit 0, equal artifacts, truthful run.json, nothing
hidden left), mismatches (artifacts differ), bad run.json, leftovers (hidden files after the
rerun), tracebacks (reruns whose output holds "Traceback"), not reached, and seconds; the
failures' details follow and everything goes to ``OUT/faults.json``.
"""

import argparse
import concurrent.futures as cf
import json
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for `tests.pipeline`

from kelp._files import _KillPoint
from tests.pipeline.test_faults import (
    LONG_STAGES,
    STAGE_PATTERNS,
    STAGES,
    build_reference,
    differences,
    kelp_run,
    leftovers,
    read_run_json,
    run_dir,
    run_json_after_rerun,
    run_json_at_kill,
    write_config,
)

# `python -m kelp` with every rename of `atomic_path` logged to $KELP_TRACE (the reference
# run: how many writes each stage makes)
TRACER = """
import os, runpy, sys
import kelp._files as files

class _Os:
    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        os.replace(src, dst)
        with open(os.environ["KELP_TRACE"], "a") as log:
            log.write(os.fspath(dst) + "\\n")

files.os = _Os()
sys.argv[0] = "kelp"
runpy.run_module("kelp", run_name="__main__")
"""


def stage_writes(trace: Path) -> dict[str, int]:
    """How many renames of the traced run each stage's pattern matches."""
    renames = [Path(line) for line in trace.read_text().splitlines()]
    out = {}
    for stage, pattern in STAGE_PATTERNS.items():
        point = _KillPoint(f"{pattern}:1")
        out[stage] = sum(point.matches(p) for p in renames)
    return out


def kill_points(total: int, args: argparse.Namespace) -> list[int]:
    """n = 1, 1 + step, ... <= N, or ``--points`` values spread evenly over 1..total."""
    if args.points:
        k = min(args.points, total)
        return sorted({round(1 + i * (total - 1) / max(k - 1, 1)) for i in range(k)})
    return list(range(1, min(args.n, total) + 1, args.step))


@dataclass
class Trial:
    stage: str
    n: int
    kill: str
    outcome: str  # ok, not-reached, no-kill, bad-kill-record, rerun-failed, mismatch
    problems: list[str] = field(default_factory=list)
    traceback: bool = False
    leftovers: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _snapshot(folder: Path, stage: str) -> Path:
    """The run folder as the stage starts, saved under ``folder/snapshot``."""
    config = write_config(folder)
    run = run_dir(config)
    shutil.rmtree(run.parent, ignore_errors=True)
    writes = 2 * STAGES.index(stage) + 1  # run.json: each earlier stage running + done, then this
    killed = kelp_run(config, kill=f"run.json:{writes}")
    if killed.returncode != -signal.SIGKILL:
        raise RuntimeError(f"snapshot of {stage}: the run did not die\n{killed.tail()}")
    wrong = run_json_at_kill(read_run_json(run), stage)
    if wrong:
        raise RuntimeError(f"snapshot of {stage}: {wrong}")
    snapshot = folder / "snapshot"
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(run, snapshot)  # copy2: modification times kept, dataset hash unchanged
    return snapshot


def _trial(
    folder: Path,
    stage: str,
    n: int,
    args: argparse.Namespace,
    reference: Path,
    snapshot: Path | None,
) -> Trial:
    started = time.perf_counter()
    config = write_config(folder)
    run = run_dir(config)
    shutil.rmtree(run.parent, ignore_errors=True)
    if snapshot is not None:
        shutil.copytree(snapshot, run)
    kill = f"{STAGE_PATTERNS[stage]}:{n}" + (":before" if args.when == "before" else "")
    last = stage if args.stage_only else STAGES[-1]
    trial = Trial(stage, n, kill, "ok")
    killed = kelp_run(config, kill=kill)
    if killed.returncode == 0:
        trial.outcome = "not-reached"
    elif killed.returncode != -signal.SIGKILL:
        trial.outcome, trial.problems = "no-kill", [killed.tail(1500)]
    else:
        at_kill = read_run_json(run)
        trial.problems = run_json_at_kill(at_kill, stage)
        if trial.problems:
            trial.outcome = "bad-kill-record"
        resumed = kelp_run(config, options=("--only", stage) if args.stage_only else ())
        trial.traceback = "Traceback" in resumed.stdout + resumed.stderr
        if resumed.returncode != 0:
            trial.outcome = "rerun-failed"
            trial.problems.append(resumed.tail(1500))
        else:
            after = run_json_after_rerun(read_run_json(run), at_kill, last)
            if after:
                trial.problems += [f"run.json: {p}" for p in after]
                trial.outcome = "bad-run-json"
            diff = differences(reference, run, last)
            if diff:
                trial.problems += diff
                trial.outcome = "mismatch"
            trial.leftovers = leftovers(run)
    trial.seconds = round(time.perf_counter() - started, 1)
    return trial


def _sweep(stage: str, ns: list[int], args: argparse.Namespace, reference: Path) -> list[Trial]:
    folder = args.out / f"stage-{stage}"  # not a component of its pattern: see kelp._files
    if _KillPoint(f"{STAGE_PATTERNS[stage]}:1").matches(folder):
        raise SystemExit(f"{folder}: its path matches {STAGE_PATTERNS[stage]!r}; use another --out")
    snapshot = None if args.fresh else _snapshot(folder, stage)
    trials = []
    for n in ns:
        if time.perf_counter() > args.deadline:
            break
        trial = _trial(folder, stage, n, args, reference, snapshot)
        trials.append(trial)
        notes = " (leftovers)" * bool(trial.leftovers) + " (traceback)" * trial.traceback
        print(f"{stage} n={n}: {trial.outcome}{notes}, {trial.seconds} s", flush=True)
        if trial.outcome == "not-reached":
            break
    return trials


def _table(
    by_stage: dict[str, list[Trial]], seconds: dict[str, float], writes: dict[str, int]
) -> str:
    head = ("stage", "writes", "kill points", "n tried", "resumed OK", "mismatches",
            "bad run.json", "leftovers", "tracebacks", "not reached", "seconds")  # fmt: skip
    rows = [head]
    for stage, trials in by_stage.items():
        tried = [t for t in trials if t.outcome != "not-reached"]
        ok = [t for t in tried if t.outcome == "ok" and not t.leftovers]
        ns = [t.n for t in tried]
        rows.append((
            stage,
            str(writes[stage]),
            str(len(tried)),
            _ranges(ns),
            str(len(ok)),
            str(sum(t.outcome == "mismatch" for t in tried)),
            str(sum(t.outcome in ("bad-kill-record", "bad-run-json") for t in tried)),
            str(sum(bool(t.leftovers) for t in tried)),
            str(sum(t.traceback for t in tried)),
            str(len(trials) - len(tried)),
            f"{seconds[stage]:.0f}",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _ranges(ns: list[int]) -> str:
    """``1-4,9,12``."""
    parts: list[str] = []
    for n in ns:
        if parts and parts[-1].split("-")[-1] == str(n - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ",".join(parts) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/faults"))
    parser.add_argument("--stages", default=",".join(LONG_STAGES), help="comma-separated")
    parser.add_argument("--n", type=int, default=10, help="largest kill point per stage")
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--points", type=int, default=0,
                        help="instead of 1..N: this many n spread over each stage")  # fmt: skip
    parser.add_argument("--when", choices=("after", "before"), default="after")
    parser.add_argument("--jobs", type=int, default=2, help="stages swept at once")
    parser.add_argument("--fresh", action="store_true", help="every trial from an empty folder")
    parser.add_argument("--stage-only", action="store_true",
                        help="rerun the killed stage only, compare up to it")  # fmt: skip
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="seconds after which no new trial starts")  # fmt: skip
    args = parser.parse_args()
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(LONG_STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; stages are {', '.join(LONG_STAGES)}")
    args.out = args.out.resolve()
    start = time.perf_counter()
    args.deadline = start + args.budget
    print("reference run ...", flush=True)
    trace = args.out / "reference" / "renames.txt"
    trace.unlink(missing_ok=True)
    trace.parent.mkdir(parents=True, exist_ok=True)
    reference = build_reference(
        args.out / "reference", launcher=("-c", TRACER), env={"KELP_TRACE": str(trace)}
    )
    writes = stage_writes(trace)
    print("writes per stage: " + ", ".join(f"{s} {writes[s]}" for s in stages), flush=True)
    by_stage: dict[str, list[Trial]] = {}
    seconds: dict[str, float] = {}

    def sweep(stage: str) -> tuple[str, list[Trial], float]:
        t0 = time.perf_counter()
        trials = _sweep(stage, kill_points(writes[stage], args), args, reference)
        return stage, trials, time.perf_counter() - t0

    with cf.ThreadPoolExecutor(args.jobs) as pool:
        for stage, trials, spent in pool.map(sweep, stages):
            by_stage[stage], seconds[stage] = trials, spent
            if len(trials) < len(kill_points(writes[stage], args)):
                print(f"{stage}: time budget spent", flush=True)
    total = time.perf_counter() - start
    mode = "fresh folders" if args.fresh else "from stage snapshots"
    mode += ", rerun of the stage only" if args.stage_only else ", rerun to the end"
    which = f"{args.points} spread per stage" if args.points else f"1..{args.n} step {args.step}"
    print(f"\nkill {args.when} the n-th write, n = {which}, {mode}, {args.jobs} job(s); "
          f"total {total:.0f} s (reference included)")  # fmt: skip
    print(_table(by_stage, seconds, writes))
    trials = [t for ts in by_stage.values() for t in ts]
    failures = [
        t for t in trials if t.outcome not in ("ok", "not-reached") or t.leftovers or t.traceback
    ]
    for t in failures:
        print(f"\n{t.stage} {t.kill}: {t.outcome}")
        for line in t.problems[:20]:
            print(f"  {line}")
        if t.leftovers:
            print(f"  left behind: {', '.join(t.leftovers[:10])}")
    report: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "seconds": round(total, 1),
        "trials": [asdict(t) for t in trials],
    }
    (args.out / "faults.json").write_text(json.dumps(report, indent=2))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
