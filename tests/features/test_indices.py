import itertools
import math
import warnings

import numpy as np
import pytest

from kelp.features import indices
from kelp.features.indices import (
    EPS,
    INDICES,
    available_indices,
    compute_index,
    compute_indices,
    get_index,
)

BANDS = ("swir", "nir", "red", "green", "blue")
F32_MAX = float(np.finfo(np.float32).max)

#: Every index listed in the reference (kelp-wanted.md, "Spectral indices"), plus IPVI.
REFERENCE_NAMES = [
    "NDVI", "NDWI", "MNDWI", "EVI", "EVI2", "SABI", "KIVU", "CI", "ClGreen", "MVI", "AVI",
    "GBNDVI", "PNDVI", "GVMI", "NormNIR", "WDRVI", "NDAVI", "WAVI", "ATSAVI", "CDOM", "DOC",
    "WATERCOLOR", "Kab1", "MCARI", "mCRIG", "IPVI",
]  # fmt: skip

# Two pixels: small round numbers, and DNs of open water near kelp.
PIXELS = {
    "swir": [100.0, 7600.0],
    "nir": [300.0, 9300.0],
    "red": [50.0, 7700.0],
    "green": [80.0, 8200.0],
    "blue": [60.0, 8600.0],
}

# Expected values worked out by hand from the published formulas, one per pixel above.
FAI_W = (865 - 655) / (1610 - 655)
EXPECTED: dict[str, tuple[float, float]] = {
    "NDVI": ((300 - 50) / (300 + 50), (9300 - 7700) / (9300 + 7700)),
    "NDWI": ((80 - 300) / (80 + 300), (8200 - 9300) / (8200 + 9300)),
    "MNDWI": ((80 - 100) / (80 + 100), (8200 - 7600) / (8200 + 7600)),
    "EVI": (
        2.5 * (300 - 50) / (300 + 6 * 50 - 7.5 * 60 + 1),
        2.5 * (9300 - 7700) / (9300 + 6 * 7700 - 7.5 * 8600 + 1),
    ),
    "EVI2": (2.4 * (300 - 50) / (300 + 50 + 1), 2.4 * (9300 - 7700) / (9300 + 7700 + 1)),
    "SABI": ((300 - 50) / (80 + 60), (9300 - 7700) / (8200 + 8600)),
    "KIVU": ((60 - 50) / 80, (8600 - 7700) / 8200),
    "CI": ((50 - 60) / 50, (7700 - 8600) / 7700),
    "ClGreen": (300 / 80 - 1, 9300 / 8200 - 1),
    "MVI": (300 / 100, 9300 / 7600),
    "AVI": (2 * 300 - 50, 2 * 9300 - 7700),
    "GBNDVI": ((300 - 140) / (300 + 140), (9300 - 16800) / (9300 + 16800)),
    "PNDVI": ((300 - 190) / (300 + 190), (9300 - 24500) / (9300 + 24500)),
    "GVMI": (
        (300.1 - 100.02) / (300.1 + 100.02),
        (9300.1 - 7600.02) / (9300.1 + 7600.02),
    ),
    "NormNIR": (300 / (300 + 50 + 80), 9300 / (9300 + 7700 + 8200)),
    "WDRVI": ((30 - 50) / (30 + 50), (930 - 7700) / (930 + 7700)),
    "NDAVI": ((300 - 60) / (300 + 60), (9300 - 8600) / (9300 + 8600)),
    "WAVI": (1.5 * (300 - 60) / (300 + 60 + 0.5), 1.5 * (9300 - 8600) / (9300 + 8600 + 0.5)),
    "ATSAVI": (
        1.22 * (300 - 1.22 * 50 - 0.03) / (1.22 * 300 + 50 - 1.22 * 0.03 + 0.08 * (1 + 1.22**2)),
        1.22
        * (9300 - 1.22 * 7700 - 0.03)
        / (1.22 * 9300 + 7700 - 1.22 * 0.03 + 0.08 * (1 + 1.22**2)),
    ),
    "CDOM": (537 * math.exp(-2.93 * 80 / 50), 537 * math.exp(-2.93 * 8200 / 7700)),
    "DOC": (432 * math.exp(-2.24 * 80 / 50), 432 * math.exp(-2.24 * 8200 / 7700)),
    "WATERCOLOR": (25366 * math.exp(-4.53 * 80 / 50), 25366 * math.exp(-4.53 * 8200 / 7700)),
    "Kab1": (
        1.67 - 3.94 * math.log(60) + 3.78 * math.log(80),
        1.67 - 3.94 * math.log(8600) + 3.78 * math.log(8200),
    ),
    "MCARI": (
        ((300 - 50) - 0.2 * (300 - 80)) * (300 / 50),
        ((9300 - 7700) - 0.2 * (9300 - 8200)) * (9300 / 7700),
    ),
    "mCRIG": ((1 / 60 - 1 / 80) * 300, (1 / 8600 - 1 / 8200) * 9300),
    "IPVI": (300 / (300 + 50), 9300 / (9300 + 7700)),
    "FAI": (300 - (50 + (100 - 50) * FAI_W), 9300 - (7700 + (7600 - 7700) * FAI_W)),
    "NDMI": ((300 - 100) / (300 + 100), (9300 - 7600) / (9300 + 7600)),
    "SAVI": (1.5 * (300 - 50) / (300 + 50 + 0.5), 1.5 * (9300 - 7700) / (9300 + 7700 + 0.5)),
    "GNDVI": ((300 - 80) / (300 + 80), (9300 - 8200) / (9300 + 8200)),
    "SR": (300 / 50, 9300 / 7700),
    "GRVI": ((80 - 50) / (80 + 50), (8200 - 7700) / (8200 + 7700)),
}


def _pixels() -> dict[str, np.ndarray]:
    return {band: np.array([values], np.float32) for band, values in PIXELS.items()}


def _one(index: str, **values: float) -> float:
    """The index at one pixel whose bands take ``values``."""
    bands = {band: np.array([[v]], np.float32) for band, v in values.items()}
    return float(compute_index(index, bands)[0, 0])


# Registry


def test_expected_table_covers_registry() -> None:
    assert sorted(EXPECTED) == sorted(INDICES)


def test_registry_holds_reference_set() -> None:
    assert len(INDICES) >= 25
    assert [name for name in REFERENCE_NAMES if name not in INDICES] == []
    assert available_indices() == list(INDICES)


@pytest.mark.parametrize("name", list(INDICES))
def test_entry_is_documented(name: str) -> None:
    index = INDICES[name]
    assert index.name == name
    assert index.long_name and index.formula and index.source
    assert index.bands and set(index.bands) <= set(BANDS)
    assert f"``{name}``" in (indices.__doc__ or "")


def test_names_unique_ignoring_case() -> None:
    lower = [name.lower() for name in INDICES]
    assert len(set(lower)) == len(lower)


@pytest.mark.parametrize(
    ("query", "name"),
    [("NDVI", "NDVI"), ("ndvi", "NDVI"), ("Ndvi", "NDVI"), ("clgreen", "ClGreen"),
     ("CLGREEN", "ClGreen"), ("MCRIG", "mCRIG"), ("kab1", "Kab1"), (" normnir ", "NormNIR")],
)  # fmt: skip
def test_lookup_ignores_case(query: str, name: str) -> None:
    assert get_index(query).name == name


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("NVDI", r"unknown spectral index 'NVDI'; did you mean .*'NDVI'"),
        ("clgren", r"did you mean 'ClGreen'"),
        ("watercolour", r"did you mean 'WATERCOLOR'"),
        ("zzzz", r"unknown spectral index 'zzzz'; valid: NDVI, NDWI, "),
    ],
)
def test_lookup_miss_suggests(query: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_index(query)
    with pytest.raises(ValueError, match=match):
        compute_index(query, _pixels())


@pytest.mark.parametrize(
    ("name", "bands", "match"),
    [
        ("NDVI", {"nir": [[1.0]]}, r"index 'NDVI' needs band 'red'"),
        ("MNDWI", {"green": [[1.0]], "nir": [[1.0]]}, r"index 'MNDWI' needs band 'swir'"),
        ("NDVI", {"nir": np.ones((1, 1), np.int16), "red": [[1.0]]}, r"'nir' has dtype int16"),
        ("NDVI", {"nir": np.ones((2, 2)), "red": np.ones((2, 3))}, r"one shape"),
    ],
)
def test_bad_bands_raise(name: str, bands: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_index(name, bands)  # type: ignore[arg-type]


def test_names_given_as_string_raise() -> None:
    with pytest.raises(ValueError, match=r"wrap it in a list"):
        compute_indices("NDVI", _pixels())


# Values


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_matches_hand_computed(name: str) -> None:
    values = compute_index(name, _pixels())
    np.testing.assert_allclose(values[0], EXPECTED[name], rtol=2e-5, atol=2e-5)


def test_only_needed_bands_required() -> None:
    bands = {"nir": np.array([[300.0]], np.float32), "red": np.array([[50.0]], np.float32)}
    assert compute_index("NDVI", bands)[0, 0] == pytest.approx(250 / 350)


def test_compute_indices_stacks_in_order() -> None:
    rng = np.random.default_rng(0)
    bands = {band: rng.uniform(7000, 12000, (5, 7)).astype(np.float32) for band in BANDS}
    names = ["sr", "NDVI", "Kab1", "NDVI"]
    stack = compute_indices(names, bands)
    assert stack.shape == (4, 5, 7)
    assert stack.dtype == np.float32
    for i, name in enumerate(names):
        np.testing.assert_array_equal(stack[i], compute_index(name, bands))
    assert compute_indices([], bands).shape == (0, 5, 7)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_output_is_float32_of_input_shape(dtype: type) -> None:
    bands = {band: np.full((3, 4), 8000.0 + i, dtype) for i, band in enumerate(BANDS)}
    for name in INDICES:
        values = compute_index(name, bands)
        assert values.shape == (3, 4)
        assert values.dtype == np.float32


def test_inputs_not_modified() -> None:
    bands = _pixels()
    bands["red"][0, 1] = 0.0
    bands["nir"][0, 0] = np.nan
    before = {band: array.copy() for band, array in bands.items()}
    compute_indices(list(INDICES), bands)
    for band, array in bands.items():
        np.testing.assert_array_equal(array, before[band])


# Fill policy


@pytest.mark.parametrize("name", list(INDICES))
def test_nan_exactly_where_used_band_missing(name: str) -> None:
    rng = np.random.default_rng(1)
    bands = {band: rng.uniform(7000, 12000, (4, 6)).astype(np.float32) for band in BANDS}
    used = INDICES[name].bands
    expected = np.zeros((4, 6), bool)
    for i, band in enumerate(used):
        bands[band][i, i] = np.nan
        expected[i, i] = True
    for band in BANDS:
        if band not in used:
            bands[band][3, 5] = np.nan  # not used by this index: must not matter
    values = compute_index(name, bands)
    np.testing.assert_array_equal(np.isnan(values), expected)
    assert np.isfinite(values[~expected]).all()


EXTREMES = [0.0, -0.0, 1e-7, -1e-7, 1.0, -1.0, 7273.0, -32768.0, 65535.0, 3e38, -3e38]


@pytest.mark.parametrize("name", list(INDICES))
def test_extreme_inputs_give_finite_values(name: str) -> None:
    used = INDICES[name].bands
    grid = np.array(list(itertools.product([*EXTREMES, np.inf, -np.inf], repeat=len(used))))
    bands = {band: grid[:, i].astype(np.float32).reshape(1, -1) for i, band in enumerate(used)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = compute_index(name, bands)
    assert values.dtype == np.float32
    assert np.isfinite(values).all()


def test_zero_denominator_uses_signed_eps() -> None:
    assert _one("SR", nir=3.0, red=0.0) == pytest.approx(3.0 / EPS, rel=1e-5)
    assert _one("SR", nir=3.0, red=-0.0) == pytest.approx(3.0 / EPS, rel=1e-5)
    assert _one("SR", nir=3.0, red=4e-7) == pytest.approx(3.0 / EPS, rel=1e-5)
    assert _one("SR", nir=3.0, red=-4e-7) == pytest.approx(-3.0 / EPS, rel=1e-5)
    assert _one("SR", nir=3.0, red=2e-6) == pytest.approx(3.0 / 2e-6, rel=1e-5)
    assert _one("NDVI", nir=0.0, red=0.0) == 0.0
    assert _one("NDVI", nir=1.0, red=-1.0) == pytest.approx(2.0 / EPS, rel=1e-5)


def test_log_argument_clamped_to_eps() -> None:
    expected = 1.67 - 3.94 * math.log(EPS) + 3.78 * math.log(80)
    assert _one("Kab1", blue=0.0, green=80.0) == pytest.approx(expected, rel=1e-5)
    assert _one("Kab1", blue=-500.0, green=80.0) == pytest.approx(expected, rel=1e-5)


def test_exponent_clipped() -> None:
    assert _one("CDOM", green=-1e4, red=1.0) == pytest.approx(537 * math.exp(50), rel=1e-5)
    assert _one("CDOM", green=1e4, red=1.0) == 0.0


def test_overflow_replaced_by_float32_limits() -> None:
    assert _one("AVI", nir=3e38, red=-3e38) == F32_MAX
    assert _one("AVI", nir=-3e38, red=3e38) == -F32_MAX
    # (inf - inf) / (inf + inf) is NaN by arithmetic, not missing data: it becomes 0
    assert _one("NDVI", nir=np.inf, red=np.inf) == 0.0
