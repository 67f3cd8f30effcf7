"""The run layout: one place for every path of a run folder, and the two hashes."""

import hashlib
from pathlib import Path

from kelp.bands import DEFAULT_BAND_ORDER
from kelp.layout import RunLayout, file_sha256, short_hash


def test_defaults_are_the_run_folders_own(tmp_path: Path) -> None:
    layout = RunLayout.of(tmp_path)
    assert layout.data == tmp_path / "data"
    assert layout.folds == tmp_path / "folds.csv"
    assert layout.features == tmp_path / "features"
    assert layout.band_order == DEFAULT_BAND_ORDER
    assert layout.run_json == tmp_path / "run.json"
    assert layout.tree_fold("xgboost", 2) == tmp_path / "tabular" / "xgboost" / "fold=2"
    assert layout.cnn_best(1) == tmp_path / "cnn" / "fold=1" / "best"
    assert layout.cnn_last(1) == tmp_path / "cnn" / "fold=1" / "last"
    assert layout.oof("cnn") == tmp_path / "oof" / "cnn"
    assert layout.test("cnn") == tmp_path / "test" / "cnn"
    assert layout.report == tmp_path / "report.html"


def test_inputs_may_live_elsewhere(tmp_path: Path) -> None:
    order = ("nir", "swir", "red", "green", "blue", "qa", "dem")
    layout = RunLayout.of(
        tmp_path / "run", tmp_path / "d", folds=tmp_path / "f.csv", features=tmp_path / "feat",
        band_order=list(order),
    )  # fmt: skip
    assert (layout.data, layout.folds, layout.features) == (
        tmp_path / "d", tmp_path / "f.csv", tmp_path / "feat",
    )  # fmt: skip
    assert layout.band_order == order
    assert layout.stacking == tmp_path / "run" / "stacking"  # outputs stay in the run


def test_outputs_of_each_stage(tmp_path: Path) -> None:
    layout = RunLayout.of(tmp_path)
    assert layout.outputs("folds") == (tmp_path / "folds.csv", tmp_path / "tile_stats.csv")
    assert layout.outputs("trees", ("lightgbm",)) == (
        tmp_path / "tabular", tmp_path / "oof" / "lightgbm",
    )  # fmt: skip
    assert layout.outputs("cnn") == (tmp_path / "cnn", tmp_path / "oof" / "cnn")
    assert layout.outputs("predict") == (tmp_path / "predictions",)


def test_short_hash_is_canonical() -> None:
    a = short_hash({"b": [1, 2], "a": {"y": 1.5, "x": None}})
    assert a == short_hash({"a": {"x": None, "y": 1.5}, "b": [1, 2]})  # key order ignored
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != short_hash({"b": [2, 1], "a": {"y": 1.5, "x": None}})  # list order counts
    # compact separators, sorted keys: the value is pinned so a change is deliberate
    text = '{"a":{"x":null,"y":1.5},"b":[1,2]}'
    assert a == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert short_hash({"p": Path("x/y")}) == short_hash({"p": "x/y"})  # paths as text


def test_file_sha256_reads_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 9000  # > 2 MiB: several blocks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
