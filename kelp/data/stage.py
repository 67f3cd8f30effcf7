"""The data stages of a run: the dataset itself (synthesised when asked), then its folds.

`kelp run` calls :func:`prepare_dataset` before its stages and :func:`split_dataset` as
its ``folds`` stage; `kelp data folds` is the same :func:`split_dataset`.
"""

from pathlib import Path
from typing import Any

from kelp._progress import say
from kelp.data.catalog import open_catalog
from kelp.data.check import check_dataset, write_stats
from kelp.data.config import DataConfig, FoldsConfig
from kelp.data.folds import area_recovery, make_folds
from kelp.data.folds_file import read_folds, write_folds
from kelp.errors import DatasetError, InputError
from kelp.layout import RunLayout

__all__ = ["prepare_dataset", "split_dataset"]


def prepare_dataset(config: DataConfig, layout: RunLayout) -> Path:
    """The dataset folder ``layout.data``, synthesised first when missing and ``[data.synth]``
    asks for it.

    Raises:
        InputError: no dataset there and no ``[data.synth]`` table.
    """
    data = layout.data
    if (data / "metadata.csv").is_file() or (data.is_dir() and any(data.iterdir())):
        return data
    if config.synth is None:
        raise InputError(
            f"{data}: dataset folder not found; fix [data] path in the config, or add a "
            "[data.synth] table to synthesise one"
        )
    from kelp.data.synth import synthesize

    s = config.synth
    say(f"synthesising {s.tiles} tiles of {s.size} px ({s.preset} preset) into {data}")
    synthesize(
        data, s.tiles, seed=s.seed, size=s.size, test_fraction=s.test_fraction, preset=s.preset
    )
    return data


def split_dataset(config: FoldsConfig, layout: RunLayout) -> dict[str, Any]:
    """Check every tile, write their statistics, then write the folds file.

    Groups the train tiles of ``layout.data`` into areas and splits the areas into
    ``config.k`` folds (or validates and adopts ``config.file``); writes ``layout.folds``
    and ``layout.tile_stats``.

    Returns:
        The summary: tiles, areas, k, the problems found, tiles/areas/kelp tiles per fold,
        and the area recovery of a synthetic set (adjusted Rand index, else ``None``).

    With ``on_error = "skip"`` every train tile with a problem is left out of the folds
    (listed with its reason in ``folds.csv`` and the summary); later stages accept the
    problems of those tiles only.

    Raises:
        DatasetError: the dataset's problems, listed, with ``on_error = "fail"`` (or a
            broken listing, which no tile can be skipped for).
        InputError: a folds file that does not match the dataset, or too few areas.
    """
    report = check_dataset(layout.data, layout.band_order)
    if report.stats:
        write_stats(report.stats, layout.tile_stats)
    if report.problems and config.on_error == "fail":
        raise DatasetError(report.problems)
    bad = {p.tile_id: str(p) for p in report.problems if p.tile_id is not None}
    if config.file is not None:
        assignment = read_folds(config.file, open_catalog(layout.data))
    else:
        assignment = make_folds(
            layout.data,
            config.k,
            config.seed,
            config.threshold,
            config.max_group_size,
            layout.band_order,
            exclude=bad if config.on_error == "skip" else None,
        )
    for tile_id, reason in assignment.skipped:
        say(f"[yellow]skipped[/yellow] train tile {tile_id}: {reason}")
    write_folds(assignment, layout.folds)
    per_fold = []
    for fold in range(assignment.k):
        held = [i for i, f in enumerate(assignment.folds) if f == fold]
        flags = assignment.flags
        per_fold.append(
            {
                "tiles": len(held),
                "areas": len({assignment.aoi_ids[i] for i in held}),
                "with_kelp": sum(1 for i in held if flags and flags[i]["has_kelp"]),
            }
        )
    return {
        "folds_file": str(layout.folds),
        "n_train": len(assignment.tile_ids),
        "n_areas": len(set(assignment.aoi_ids)),
        "k": assignment.k,
        "per_fold": per_fold,
        "problems": [str(p) for p in report.problems],
        "skipped": dict(assignment.skipped),
        "area_ari": area_recovery(layout.data, assignment),
    }
