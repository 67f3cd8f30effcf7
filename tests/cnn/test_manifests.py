"""The run key: what a fold's weights depend on, and what they do not."""

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from kelp.cnn.config import _MACHINE_FIELDS, CnnConfig
from kelp.cnn.inputs import RunInputs
from kelp.cnn.manifests import run_key
from tests.cnn.conftest import TINY


@dataclass(frozen=True)
class _Inputs:
    """What :func:`run_key` reads of :class:`RunInputs`."""

    features: dict[str, Any] = field(
        default_factory=lambda: {
            "stack_hash": "stack-1",
            "normalisation": {"without_fold": {"0": {"tiles": 4}, "1": {"tiles": 4}}},
        }
    )
    folds_sha256: str = "f" * 64
    records: dict[str, None] = field(default_factory=lambda: dict.fromkeys(["A0", "A1", "B0"]))


def _key(config: CnnConfig = TINY, **inputs: Any) -> str:
    return run_key(config, cast(RunInputs, _Inputs(**inputs)))


#: A different value for each machine-only field of the config.
MACHINE = {"device": "cuda", "num_workers": 3, "cache_mb": 1}


def test_every_machine_field_is_covered() -> None:
    assert set(MACHINE) == _MACHINE_FIELDS


@pytest.mark.parametrize(("name", "value"), MACHINE.items())
def test_machine_fields_keep_the_key(name: str, value: object) -> None:
    assert getattr(TINY, name) != value
    assert _key(TINY.model_copy(update={name: value})) == _key()


@pytest.mark.parametrize(
    "update",
    [
        {"lr": 2e-3},
        {"epochs": 3},
        {"seed": 1},
        {"batch_size": 2},
        {"patience": 3},
        {"channels": ("nir", "NDVI")},
        {"augment": False},
        {"loss": "bce"},
    ],
)
def test_training_fields_change_the_key(update: dict[str, object]) -> None:
    changed = CnnConfig.model_validate({**TINY.model_dump(), **update})
    assert _key(changed) != _key()


def test_the_inputs_change_the_key() -> None:
    base = _Inputs()
    assert _key() == _key()
    assert _key(folds_sha256="0" * 64) != _key()
    assert _key(records=dict.fromkeys(["A0", "A1"])) != _key()
    assert _key(records=dict.fromkeys(["B0", "A1", "A0"])) == _key()  # tile order is not
    assert _key(features={**base.features, "stack_hash": "stack-2"}) != _key()
    other_stats = {"without_fold": {"0": {"tiles": 3}, "1": {"tiles": 5}}}
    assert _key(features={**base.features, "normalisation": other_stats}) != _key()
