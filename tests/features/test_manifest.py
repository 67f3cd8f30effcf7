"""`read_build`: the one checked reader of a feature build, and its refusals."""

import json
from pathlib import Path

import pytest

from kelp.errors import StaleInputError
from kelp.features.config import FeatureConfig
from kelp.features.manifest import read_build
from kelp.features.stack import channel_names

CONFIG = FeatureConfig(indices=("NDVI",))


def _write(folder: Path, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "config": CONFIG.model_dump(mode="json"),
        "stack_hash": CONFIG.stack_hash(),
        "table_hash": CONFIG.table_hash(),
        "feature_names": channel_names(CONFIG),
        "band_order": ["dem", "qa", "blue", "green", "red", "nir", "swir"],
        "folds_sha256": "f" * 64,
        "tiles": {"AA000001": {"fold": 0, "rows": 10}},
        "normalisation": {"train": {"channels": {"nir": {}}}, "without_fold": {}},
    } | changes
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_reads_every_field_once(tmp_path: Path) -> None:
    build = read_build(_write(tmp_path / "f"))
    assert build.config == CONFIG
    assert build.band_order == ("dem", "qa", "blue", "green", "red", "nir", "swir")
    assert build.feature_names == tuple(channel_names(CONFIG))
    assert build.tiles == {"AA000001": {"fold": 0, "rows": 10}}
    assert build.normalisation() == {"nir": {}}
    with pytest.raises(StaleInputError, match="no normalisation statistics without fold 0"):
        build.normalisation(without_fold=0)
    folds = tmp_path / "folds.csv"
    folds.write_text("tile_id,fold\n")
    with pytest.raises(StaleInputError, match="built from another folds file"):
        build.check_folds(folds)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"stack_hash": "0" * 16}, "another version of the channel code"),
        ({"feature_names": ["nir"]}, "other feature names"),
        ({"config": {"unknown": 1}}, "incomplete"),
    ],
)
def test_refuses_a_stale_manifest(tmp_path: Path, changes: dict[str, object], match: str) -> None:
    with pytest.raises(StaleInputError, match=f"{match}.*rerun `kelp build-features`"):
        read_build(_write(tmp_path / "f", **changes))


def test_missing_or_truncated_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `kelp build-features` first"):
        read_build(tmp_path)
    (tmp_path / "manifest.json").write_text('{"config": ')
    with pytest.raises(StaleInputError, match="not valid JSON .*rerun `kelp build-features`"):
        read_build(tmp_path)
