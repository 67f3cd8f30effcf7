import tarfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from kelp.bands import BAND_NAMES, MISSING, check_band_order
from kelp.data.io import pack_submission, read_image, read_mask, write_image, write_mask
from kelp.errors import TileError


def _image(h: int = 12, w: int = 10) -> np.ndarray:
    return np.arange(7 * h * w, dtype=np.int32).reshape(7, h, w) % 30000


def _write_raw(path: Path, data: np.ndarray) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", count=data.shape[0], height=data.shape[1],
        width=data.shape[2], dtype=data.dtype.name,
    ) as dst:  # fmt: skip
        dst.write(data)


def test_image_round_trip_keeps_values_transform_and_no_crs(tmp_path: Path) -> None:
    image = _image()
    image[:, 0, 0] = MISSING
    transform = Affine(30, 0, 1000, 0, -30, 2000)
    write_image(tmp_path / "x_satellite.tif", image, transform)
    back, back_transform = read_image(tmp_path / "x_satellite.tif")
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, image)
    assert back_transform == transform
    with rasterio.open(tmp_path / "x_satellite.tif") as src:
        assert src.crs is None
        assert src.dtypes[0] == "int16"


def test_band_order_reorders_into_canonical_order(tmp_path: Path) -> None:
    image = _image()
    file_order = ("dem", "qa", "blue", "green", "red", "nir", "swir")
    write_image(tmp_path / "x.tif", image, band_order=file_order)
    raw, _ = read_image(tmp_path / "x.tif")  # read as if default order: reversed
    np.testing.assert_array_equal(raw, image[::-1])
    back, _ = read_image(tmp_path / "x.tif", band_order=file_order)
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize(
    ("order", "match"),
    [
        (("swir", "nir", "red", "green", "blue", "qa"), "missing \\['dem'\\]"),
        (("swir", "nir", "red", "green", "blue", "qa", "qa"), "repeated \\['qa'\\]"),
        (("swir", "nir", "red", "green", "blue", "qa", "elev"), "unknown \\['elev'\\]"),
    ],
)
def test_bad_band_order(order: tuple[str, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_band_order(order)


def test_band_order_is_case_insensitive() -> None:
    assert check_band_order([n.upper() for n in BAND_NAMES]) == BAND_NAMES


def test_mask_round_trip_is_compressed_uint8(tmp_path: Path) -> None:
    mask = np.zeros((20, 30), bool)
    mask[5:9, 3:7] = True
    transform = Affine(30, 0, 5, 0, -30, 7)
    write_mask(tmp_path / "m_kelp.tif", mask, transform)
    np.testing.assert_array_equal(read_mask(tmp_path / "m_kelp.tif"), mask.astype(np.uint8))
    with rasterio.open(tmp_path / "m_kelp.tif") as src:
        assert src.dtypes[0] == "uint8"
        assert src.compression is not None
        assert src.transform == transform
        assert (src.height, src.width) == (20, 30)


@pytest.mark.parametrize(
    ("setup", "reader", "match"),
    [
        (lambda p: None, read_image, "file not found"),
        (lambda p: p.write_bytes(b"not a tiff at all"), read_image, "not a readable GeoTIFF"),
        (lambda p: _write_raw(p, _image()[:6].astype(np.int16)), read_image, "has 6 bands"),
        (lambda p: _write_raw(p, _image().astype(np.float32)), read_image, "float32"),
        (
            lambda p: _write_raw(p, np.full((1, 4, 4), 2, np.uint8)),
            read_mask,
            "mask values must be 0 or 1, found 2",
        ),
        (lambda p: _write_raw(p, np.zeros((2, 4, 4), np.uint8)), read_mask, "has 2 bands"),
    ],
    ids=["missing", "not-tiff", "six-bands", "float", "mask-values", "mask-bands"],
)
def test_bad_files_name_the_file(tmp_path: Path, setup, reader, match: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.tif"
    setup(path)
    with pytest.raises(TileError, match=match) as info:
        reader(path)
    assert str(path) in str(info.value)


def test_truncated_tiff_is_a_tile_error(tmp_path: Path) -> None:
    path = tmp_path / "t_satellite.tif"
    write_image(path, _image(64, 64))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(TileError, match="t_satellite.tif"):
        read_image(path)


def test_write_mask_rejects_bad_values_and_keeps_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a_kelp.tif"
    write_mask(path, np.ones((4, 4), np.uint8))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="only 0 and 1"):
        write_mask(path, np.full((4, 4), 3))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        write_mask(path, np.ones((1, 4, 4)))
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_pack_submission_uses_competition_names(tmp_path: Path) -> None:
    for tile_id in ("BB000002", "AA000001"):
        write_mask(tmp_path / f"{tile_id}_kelp.tif", np.zeros((5, 5), np.uint8))
    out = pack_submission(tmp_path.glob("*_kelp.tif"), tmp_path / "out" / "submission.tar")
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["AA000001_kelp.tif", "BB000002_kelp.tif"]


@pytest.mark.parametrize(
    ("names", "match"),
    [([], "no masks"), (["x_pred.tif"], "must be <tile_id>_kelp.tif")],
)
def test_pack_submission_bad_input(tmp_path: Path, names: list[str], match: str) -> None:
    for name in names:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=match):
        pack_submission([tmp_path / n for n in names], tmp_path / "s.tar")
    assert not (tmp_path / "s.tar").exists()
