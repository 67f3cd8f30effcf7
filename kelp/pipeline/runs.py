"""`kelp runs` and `kelp compare`: what runs exist, and how two of them differ."""

import json
import os
from pathlib import Path
from typing import Any

from kelp.layout import RunLayout

__all__ = ["compare_runs", "list_runs"]


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _summary(run: Path) -> dict[str, Any]:
    layout = RunLayout.of(run)
    record = _load(layout.run_json)
    stacking = _load(layout.stacking / "manifest.json")
    comparison = stacking.get("comparison", {})
    bases = {
        n: c.get("dice_nested") or 0.0
        for n, c in comparison.items()
        if not n.startswith("stack-") and n != "mean-logit"
    }
    best_base = max(bases.items(), key=lambda kv: kv[1]) if bases else None
    stages = record.get("stages", {})
    failed = [s for s, e in stages.items() if e.get("status") != "done"]
    return {
        "name": run.name,
        "path": str(run),
        "started": record.get("started"),
        "status": f"{failed[0]}: {stages[failed[0]]['status']}" if failed else "done",
        "stages_done": sum(1 for e in stages.values() if e.get("status") == "done"),
        "seconds": record.get("seconds"),
        "final_dice": stacking.get("decision", {}).get("dice"),
        "best_base": best_base,
        "commit": (record.get("git") or {}).get("commit"),
    }


def list_runs(runs_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A summary per run folder (those with a ``run.json``), newest first.

    Raises:
        FileNotFoundError: no such folder.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no runs folder; start one with `kelp run CONFIG`")
    runs = [_summary(p) for p in sorted(root.iterdir()) if RunLayout.of(p).run_json.is_file()]
    return sorted(runs, key=lambda r: r["started"] or "", reverse=True)


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict):
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: values}


def compare_runs(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> dict[str, Any]:
    """Config and metric differences between two runs.

    Returns:
        ``{"config": [(key, value_a, value_b)], "metrics": [(name, a, b, b - a)]}`` with
        only the config keys that differ and every metric either run has.

    Raises:
        FileNotFoundError: a folder that is not a run (no ``config.json``).
    """
    runs = [RunLayout.of(a), RunLayout.of(b)]
    for run in runs:
        if not run.config_json.is_file():
            raise FileNotFoundError(
                f"{run.root}: not a run folder (no config.json); see `kelp runs`"
            )
    configs = [_flatten(_load(r.config_json)) for r in runs]
    keys = sorted(configs[0].keys() | configs[1].keys())
    config_diff = [
        (k, configs[0].get(k), configs[1].get(k))
        for k in keys
        if configs[0].get(k) != configs[1].get(k)
    ]
    metrics: list[tuple[str, float | None, float | None, float | None]] = []
    values = []
    for run in runs:
        stacking = _load(run.stacking / "manifest.json")
        found = {
            f"{model} nested Dice": c.get("dice_nested")
            for model, c in stacking.get("comparison", {}).items()
        }
        if stacking:
            found["final nested Dice"] = stacking["decision"]["dice"]
            found["final in-sample Dice"] = stacking["decision"].get("in_sample", {}).get("dice")
        record = _load(run.run_json)
        found |= {
            f"{stage} seconds": e["seconds"]
            for stage, e in record.get("stages", {}).items()
            if "seconds" in e
        }
        values.append(found)
    for name in sorted(values[0].keys() | values[1].keys()):
        va, vb = values[0].get(name), values[1].get(name)
        delta = vb - va if va is not None and vb is not None else None
        metrics.append((name, va, vb, delta))
    return {"runs": [str(r) for r in runs], "config": config_diff, "metrics": metrics}
