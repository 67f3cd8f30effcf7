"""What the commands print: rich tables of reports, comparisons and runs."""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from kelp._progress import console, say
from kelp.layout import RunLayout

__all__ = ["compare_tables", "comparison_table", "print_results", "report_table", "runs_table"]


def report_table(report: Mapping[str, Any]) -> Table:
    """The report as a table to print: per model, each fold then all folds."""
    table = Table(
        title="out-of-fold global Dice (kelp); nested = threshold chosen on the other folds, "
        "in-sample = at the best threshold of the same maps",
        title_justify="left",
    )
    for column in ("model", "fold", "tiles", "nested", "Dice@0.5", "best t", "in-sample",
                   "precision", "recall"):  # fmt: skip
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, model in report["models"].items():
        entries = [(str(f), e) for f, e in model["per_fold"].items()]
        if model["overall"] is not None:
            entries.append(("all", model["overall"]))
        for fold, entry in entries:
            best = entry["best"]
            nested = model["nested"] if fold == "all" else None
            table.add_row(
                name,
                fold,
                str(entry["n_tiles"]),
                f"{nested['dice']:.4f}" if nested else "",
                f"{entry['at_0.5']['dice']:.4f}",
                f"{best['threshold']:.2f}",
                f"{best['dice']:.4f}",
                f"{best['precision']:.4f}",
                f"{best['recall']:.4f}",
                style="bold" if fold == "all" else None,
                end_section=fold == "all",
            )
    return table


def comparison_table(report: dict[str, Any]) -> Table:
    """One row per input / fusion: the nested global Dice first (each fold at the threshold
    chosen on the other folds), then Dice at 0.5, the in-sample best threshold and its Dice
    with precision and recall there, then Dice at 0.5 on each fold."""
    models = report["models"]
    folds = sorted({f for m in models.values() for f in m["per_fold"]}, key=int)
    table = Table(
        title="out-of-fold global Dice, same tiles for every row; nested = threshold chosen on "
        "the other folds (the honest figure), in-sample = at the best threshold of the same maps",
        title_justify="left",
    )
    table.add_column("model", no_wrap=True)
    for column in ("nested", "@0.5", "best t", "in-sample", "prec", "recall"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column(f"@0.5 on folds {'/'.join(folds)}", no_wrap=True)
    for name, model in models.items():
        overall = model["overall"]
        best = overall["best"]
        nested = model.get("nested")
        table.add_row(
            name,
            f"{nested['dice']:.4f}" if nested else "-",
            f"{overall['at_0.5']['dice']:.4f}",
            f"{best['threshold']:.2f}",
            f"{best['dice']:.4f}",
            f"{best['precision']:.3f}",
            f"{best['recall']:.3f}",
            " ".join(f"{model['per_fold'][f]['at_0.5']['dice']:.3f}" for f in folds),
        )
    return table


def runs_table(runs: list[dict[str, Any]]) -> Table:
    """The runs as a table to print."""
    table = Table(title="runs", title_justify="left")
    for column in ("run", "started", "status", "seconds", "final nested Dice", "best base model"):
        table.add_column(column, no_wrap=column == "run")
    for r in runs:
        best = r["best_base"]
        table.add_row(
            r["name"],
            str(r["started"] or ""),
            r["status"],
            "" if r["seconds"] is None else f"{r['seconds']:.0f}",
            "" if r["final_dice"] is None else f"{r['final_dice']:.4f}",
            "" if best is None else f"{best[0]} {best[1]:.4f}",
        )
    return table


def print_results(run: Path, record: Mapping[str, object] | None = None) -> None:
    """The stacker's comparison table and final decision of a run (and, after `kelp run`,
    where its folder and report are)."""
    stacking = RunLayout.of(run).stacking
    report = stacking / "comparison.json"
    if report.is_file():
        console.print(comparison_table(json.loads(report.read_text())))
    decision = stacking / "decision.json"
    if decision.is_file():
        d = json.loads(decision.read_text())
        say(
            f"final masks (post-processing chosen on out-of-fold maps): nested global Dice "
            f"{d['dice']:.4f}, in-sample {d['in_sample']['dice']:.4f}"
        )
    if record:
        say(
            f"run folder: {run}  (stages' wall time {record.get('seconds')} s, this invocation "
            f"{record.get('invocation_seconds')} s)"
        )
        say(f"report: {record.get('report')}")


def compare_tables(diff: Mapping[str, Any], a: str, b: str) -> tuple[Table, Table]:
    """The config differences and the metrics of `kelp compare` (runs named ``a``, ``b``)."""
    config = Table(title="config differences", title_justify="left")
    for column in ("key", a, b):
        config.add_column(column)
    for key, va, vb in diff["config"]:
        config.add_row(key, str(va), str(vb))
    metrics = Table(title="metrics", title_justify="left")
    for column in ("metric", a, b, "B - A"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")

    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    for name, va, vb, delta in diff["metrics"]:
        metrics.add_row(name, fmt(va), fmt(vb), "" if delta is None else f"{delta:+.4f}")
    return config, metrics
