"""``report.html``: one self-contained page per run (every image embedded as base64).

Sections: the run (commit, dataset hash, per-stage status, time, memory, device), the
results table (each base model alone, the logit average and each meta-model, as global
Dice on the same out-of-fold tiles) with the chosen post-processing, the threshold sweep,
per-fold CNN training curves, tree feature importance, and the prediction grid.
"""

import base64
import csv
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from kelp._files import atomic_path
from kelp.layout import RunLayout

__all__ = ["write_report"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}h2{border-bottom:2px solid #2a7;
padding-bottom:4px}.muted{color:#777}.best{font-weight:bold;background:#e8f6ee}
"""


def _png(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _image(path: Path, alt: str) -> str:
    return _png(path.read_bytes(), alt) if path.is_file() else ""


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(header: list[str], rows: list[list[Any]], best_row: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="best"' if i == best_row else ""
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _sweep_plot(sweep_csv: Path) -> str:
    if not sweep_csv.is_file():
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, list[tuple[float, float]]] = {}
    with open(sweep_csv, newline="") as f:
        for row in csv.DictReader(f):
            label = f"land mask {row['land_mask']}, min area {row['min_area']}, {row['morphology']}"
            curves.setdefault(label, []).append((float(row["threshold"]), float(row["dice"])))
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, points in sorted(curves.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], label=label, linewidth=1)
    ax.set_xlabel("threshold")
    ax.set_ylabel("out-of-fold global Dice")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return _png(buffer.getvalue(), "threshold sweep")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _tuning(folder: Path) -> list[str]:
    """A section per `kelp tune` study of the run: best trial, history, importances."""
    parts = []
    for path in sorted(folder.glob("*/summary.json")):
        summary = _load(path)
        best = summary["best"]
        counts = ", ".join(f"{n} {state}" for state, n in summary["counts"].items() if n)
        what = summary["target"] + (f" ({summary['model']})" if summary.get("model") else "")
        parts.append(f"<h2>Tuning: {html.escape(summary['study'])}</h2>")
        parts.append(
            f"<p>{html.escape(what)}: {html.escape(counts)}. Best: trial {best['number']}, "
            f"<b>nested OOF Dice {best['value']:.4f}</b> (the objective, so optimistic for the "
            f"best of many trials); its values in {html.escape(path.parent.name)}/best.toml.</p>"
        )
        rows = [[name, json.dumps(value)] for name, value in best["params"].items()]
        parts.append(_table(["parameter", "best value"], rows))
        for name in ("history.png", "importance.png"):
            if (path.parent / name).is_file():
                parts.append(_image(path.parent / name, f"{summary['study']} {name[:-4]}"))
    return parts


def write_report(run: str | os.PathLike[str]) -> Path:
    """Write ``RUN/report.html`` from what the run's stages wrote; returns its path."""
    run = Path(run)
    layout = RunLayout.of(run)
    record = _load(layout.run_json)
    parts = [f"<h1>kelp run {html.escape(record.get('name', run.name))}</h1>"]
    git = record.get("git", {})
    parts.append(
        f"<p class=muted>commit {html.escape(str(git.get('commit')))}"
        f"{' (uncommitted changes)' if git.get('dirty') else ''} · dataset "
        f"{html.escape(str(record.get('dataset_hash')))} · started "
        f"{html.escape(str(record.get('started')))} · kelp "
        f"{html.escape(str(record.get('versions', {}).get('kelp')))}</p>"
    )
    stages = record.get("stages", {})
    if stages:
        rows = [
            [name, s.get("status"), s.get("seconds", ""), s.get("peak_rss_mb", ""),
             json.dumps(s.get("device", "")) if isinstance(s.get("device"), dict)
             else s.get("device", "")]
            for name, s in stages.items()
        ]  # fmt: skip
        parts.append("<h2>Stages</h2>")
        parts.append(_table(["stage", "status", "seconds", "peak MiB", "device"], rows))

    stacking = _load(layout.stacking / "manifest.json")
    if stacking:
        parts.append("<h2>Results: out-of-fold global Dice on the same tiles</h2>")
        parts.append(
            "<p><b>nested</b>: each fold scored at the threshold chosen on the other folds "
            "(the honest figure); <b>in-sample</b>: at the threshold that is best on the same "
            "maps it is reported on (optimistic).</p>"
        )
        comparison = stacking["comparison"]
        names = list(comparison)
        folds = sorted({f for c in comparison.values() for f in c["per_fold_dice_at_0.5"]}, key=int)
        rows = [
            [name, _fmt(c.get("dice_nested")), f"{c['dice_at_0.5']:.4f}",
             f"{c['best_threshold']:.2f}", f"{c['dice_at_best']:.4f}",
             *(f"{c['per_fold_dice_at_0.5'][f]:.3f}" for f in folds)]
            for name, c in comparison.items()
        ]  # fmt: skip
        best = max(range(len(names)), key=lambda i: comparison[names[i]].get("dice_nested") or 0)
        header = ["model", "nested", "Dice@0.5", "best t", "in-sample",
                  *(f"fold {f} @0.5" for f in folds)]  # fmt: skip
        parts.append(_table(header, rows, best))
        d = stacking["decision"]
        parts.append(
            f"<p>Final decision ({html.escape(stacking['meta']['meta'])} meta-model, chosen on "
            f"out-of-fold fused maps): threshold {d['threshold']}, land mask "
            f"{'on' if d['land_mask'] else 'off'}, min area {d['min_area']}, morphology "
            f"{html.escape(d['morphology'])}: <b>nested global Dice {d['dice']:.4f}</b> "
            f"(precision {d['precision']:.3f}, recall {d['recall']:.3f}; each fold under the "
            f"decision chosen on the other folds); in-sample {d['in_sample']['dice']:.4f}.</p>"
        )
        parts.append("<h2>Threshold sweep</h2>" + _sweep_plot(layout.stacking / "sweep.csv"))

    curves = sorted(layout.cnn.glob("fold=*/curves.png"))
    if curves:
        parts.append("<h2>CNN training curves</h2>")
        parts.extend(_image(p, f"CNN {p.parent.name}") for p in curves)
    importances = sorted(layout.tabular.glob("*/fold=0/importance.png"))
    if importances:
        parts.append("<h2>Tree feature importance (fold 0)</h2>")
        parts.extend(_image(p, f"{p.parent.parent.name} importance") for p in importances)
    grid = layout.stacking / "grid.png"
    if grid.is_file():
        parts.append("<h2>Predictions across the Dice range (out-of-fold)</h2>")
        parts.append(_image(grid, "prediction grid"))
    predictions = _load(layout.predictions / "manifest.json")
    if predictions:
        parts.append(
            f"<p>{predictions['n_tiles']} test masks and "
            f"{html.escape(Path(predictions['submission']).name)} in predictions/.</p>"
        )
    parts.extend(_tuning(run / "tune"))
    page = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>kelp run {html.escape(record.get('name', run.name))}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    out = layout.report
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return out
