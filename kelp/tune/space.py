"""Search spaces of `kelp tune`: what each target searches, where each value goes in the config.

Every searchable parameter has a name (the library's own name where it is one library's
parameter), the config key it sets and a default range. The config overrides a range,
fixes a value or drops a parameter, key by key::

    [tune.trees]                     # shared by every tree model
    max_rounds = {low = 200, high = 1000, log = true}
    n_random = "off"                 # not searched: the table is not rebuilt
    [tune.trees.lightgbm]            # one model's parameters
    num_leaves = {low = 15, high = 127, log = true}
    feature_fraction = 0.7           # fixed, not searched
    [tune.stack]
    meta = {choices = ["logistic", "lightgbm"]}

A scalar fixes the value, ``"off"`` leaves the parameter at the config's value. A range is
``{low, high}`` (integers give an integer parameter; ``log = true`` samples on a
log scale, ``step`` on a grid), ``{choices = [...]}`` a categorical one. A parameter whose
default range is ``None`` in the tables below is searched only when the config gives it
one. Nothing here imports Optuna: :meth:`Space.suggest` takes any object with Optuna's
``suggest_*`` methods.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kelp.errors import ConfigError, unknown_name

__all__ = [
    "OFF",
    "TARGETS",
    "TREE_MODELS",
    "Choice",
    "Fixed",
    "Param",
    "Range",
    "Space",
    "Target",
    "build_space",
    "catalogue",
]

Target = Literal["trees", "cnn", "stack"]
OFF = "off"
TARGETS: tuple[Target, ...] = ("trees", "cnn", "stack")


class Suggests(Protocol):
    """What :meth:`Space.suggest` needs of a trial (``optuna.Trial`` has it)."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class Range:
    """A numeric range: integer when both ends are integers."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def suggest(self, trial: Suggests, name: str) -> Any:
        if self.integer:
            step = int(self.step) if self.step is not None else 1
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Choice:
    """A categorical parameter."""

    choices: tuple[Any, ...]

    def suggest(self, trial: Suggests, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))


@dataclass(frozen=True)
class Fixed:
    """A value set in every trial, not searched."""

    value: Any

    def suggest(self, trial: Suggests, name: str) -> Any:
        return self.value


Dist = Range | Choice | Fixed


@dataclass(frozen=True)
class Param:
    """One searchable parameter.

    Attributes:
        name: its name in the search space (and in the study).
        key: the dotted config key it sets, e.g. ``tabular.params.lightgbm.num_leaves``.
        default: its default range; ``None`` = searched only when the config gives one.
        when: ``(parameter, value)``: sampled only in trials where that parameter has that
            value (the LightGBM meta-model's parameters when ``meta = "lightgbm"``).
    """

    name: str
    key: str
    default: Dist | None
    when: tuple[str, Any] | None = None


def _lr(key: str) -> Param:
    return Param("learning_rate", key, Range(0.02, 0.3, log=True))


_TREES_SHARED = (
    Param("max_rounds", "tabular.max_rounds", Range(200, 2000, log=True)),
    Param("sample_weight", "tabular.sample_weight", Choice((False, True))),
    # the table's sampling: a trial that changes it rebuilds the table in its scratch folder
    Param("n_random", "features.sampling.n_random", Range(250, 4000, log=True)),
    Param("buffer", "features.sampling.buffer", None),
)
_P = "tabular.params"
_TREES: dict[str, tuple[Param, ...]] = {
    "lightgbm": (
        _lr(f"{_P}.lightgbm.learning_rate"),
        Param("num_leaves", f"{_P}.lightgbm.num_leaves", Range(15, 255, log=True)),
        Param("min_data_in_leaf", f"{_P}.lightgbm.min_data_in_leaf", Range(20, 500, log=True)),
        Param("feature_fraction", f"{_P}.lightgbm.feature_fraction", Range(0.3, 1.0)),
        Param("bagging_fraction", f"{_P}.lightgbm.bagging_fraction", Range(0.5, 1.0)),
        Param("lambda_l2", f"{_P}.lightgbm.lambda_l2", Range(0.01, 30.0, log=True)),
    ),
    "xgboost": (
        _lr(f"{_P}.xgboost.learning_rate"),
        Param("max_depth", f"{_P}.xgboost.max_depth", Range(4, 12)),
        Param("min_child_weight", f"{_P}.xgboost.min_child_weight", Range(0.5, 50.0, log=True)),
        Param("subsample", f"{_P}.xgboost.subsample", Range(0.5, 1.0)),
        Param("colsample_bytree", f"{_P}.xgboost.colsample_bytree", Range(0.3, 1.0)),
        Param("reg_lambda", f"{_P}.xgboost.reg_lambda", Range(0.01, 30.0, log=True)),
    ),
    "catboost": (
        _lr(f"{_P}.catboost.learning_rate"),
        Param("depth", f"{_P}.catboost.depth", Range(4, 10)),
        Param("l2_leaf_reg", f"{_P}.catboost.l2_leaf_reg", Range(0.3, 30.0, log=True)),
        Param("rsm", f"{_P}.catboost.rsm", None),  # feature subsampling; CPU only
    ),
    "random_forest": (
        Param("num_parallel_tree", f"{_P}.random_forest.num_parallel_tree", Range(16, 96)),
        Param("max_depth", f"{_P}.random_forest.max_depth", Range(8, 16)),
        Param(
            "min_child_weight", f"{_P}.random_forest.min_child_weight", Range(1.0, 50.0, log=True)
        ),
        Param("colsample_bynode", f"{_P}.random_forest.colsample_bynode", Range(0.2, 0.8)),
        Param("subsample", f"{_P}.random_forest.subsample", Range(0.4, 0.9)),
    ),
}
TREE_MODELS = tuple(_TREES)
# the forest does not boost: no rounds; `max_rounds` is dropped for it
_NOT_FOR = {"random_forest": {"max_rounds"}}

_CNN = (
    Param("lr", "cnn.lr", Range(1e-4, 3e-3, log=True)),
    Param("weight_decay", "cnn.weight_decay", Range(1e-6, 1e-2, log=True)),
    Param("loss", "cnn.loss", Choice(("dice_bce", "dice", "bce", "focal", "lovasz"))),
    Param("encoder", "cnn.encoder", Choice(("resnet18", "resnet34"))),
    Param("epochs", "cnn.epochs", Range(4, 40)),
    Param("crop_size", "cnn.crop_size", None),
    Param("batch_size", "cnn.batch_size", None),
    Param("kelp_tile_weight", "cnn.kelp_tile_weight", None),
)

_STACK = (
    Param("meta", "stacking.meta", Choice(("average", "logistic", "lightgbm"))),
    Param(
        "num_leaves", "stacking.lightgbm.num_leaves", Range(4, 63, log=True), ("meta", "lightgbm")
    ),
    Param(
        "learning_rate",
        "stacking.lightgbm.learning_rate",
        Range(0.01, 0.2, log=True),
        ("meta", "lightgbm"),
    ),
    Param(
        "n_estimators",
        "stacking.lightgbm.n_estimators",
        Range(50, 600, log=True),
        ("meta", "lightgbm"),
    ),
    Param(
        "min_child_samples",
        "stacking.lightgbm.min_child_samples",
        Range(10, 500, log=True),
        ("meta", "lightgbm"),
    ),
)


def catalogue(target: Target, model: str | None = None) -> tuple[Param, ...]:
    """Every parameter ``target`` (for trees: ``model``) can search."""
    if target == "cnn":
        return _CNN
    if target == "stack":
        return _STACK
    if model not in _TREES:
        raise unknown_name("tree model", str(model), _TREES)
    shared = tuple(p for p in _TREES_SHARED if p.name not in _NOT_FOR.get(model, set()))
    return shared + _TREES[model]


@dataclass(frozen=True)
class Space:
    """A target's search space: each parameter with the distribution it is drawn from."""

    target: Target
    model: str | None
    params: tuple[tuple[Param, Dist], ...]

    @property
    def searched(self) -> list[str]:
        """Names of the parameters drawn (not fixed)."""
        return [p.name for p, d in self.params if not isinstance(d, Fixed)]

    def suggest(self, trial: Suggests) -> dict[str, Any]:
        """Draw one trial's values: ``{config key: value}``."""
        drawn: dict[str, Any] = {}
        out: dict[str, Any] = {}
        for param, dist in self.params:
            if param.when is not None and drawn.get(param.when[0]) != param.when[1]:
                continue
            drawn[param.name] = dist.suggest(trial, param.name)
            out[param.key] = drawn[param.name]
        return out

    def values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``{config key: value}`` of a finished trial's parameters (and the fixed ones)."""
        out = {}
        for param, dist in self.params:
            if isinstance(dist, Fixed):
                if param.when is None or params.get(param.when[0]) == param.when[1]:
                    out[param.key] = dist.value
            elif param.name in params:
                out[param.key] = params[param.name]
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-ready: name -> range, choices or fixed value."""
        out: dict[str, Any] = {}
        for param, dist in self.params:
            if isinstance(dist, Range):
                out[param.name] = {"low": dist.low, "high": dist.high, "log": dist.log}
                if dist.step is not None:
                    out[param.name]["step"] = dist.step
            elif isinstance(dist, Choice):
                out[param.name] = {"choices": list(dist.choices)}
            else:
                out[param.name] = {"fixed": dist.value}
        return out


def build_space(target: Target, model: str | None, overrides: Mapping[str, Any]) -> Space:
    """The search space of ``target`` with the config's ``[tune.<target>]`` applied.

    Args:
        target: ``trees``, ``cnn`` or ``stack``.
        model: the tree model (trees only).
        overrides: the ``[tune.<target>]`` table; for trees, a model's own parameters go
            under its name (``[tune.trees.lightgbm]``).

    Raises:
        ConfigError: an unknown parameter (with the valid ones), an empty or inverted
            range, an empty list of choices, or a value of the wrong form.
    """
    where = f"[tune.{target}]"
    params = catalogue(target, model)
    given: dict[str, Any] = {}
    for name, value in overrides.items():
        if target == "trees" and name in _TREES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {name} must be a table of {name}'s parameters")
            if name == model:
                given.update({k: (f"{where[:-1]}.{name}]", v) for k, v in value.items()})
            continue
        given[name] = (where, value)
    names = [p.name for p in params if p.name not in _NOT_FOR.get(str(model), set())]
    shared = [p.name for p in _TREES_SHARED] if target == "trees" else []
    for name, (table, _) in given.items():
        if name not in names and name not in shared:
            what = f"parameter of {model}" if target == "trees" else f"{target} parameter"
            raise unknown_name(f"{what} in {table}", name, dict.fromkeys([*shared, *names]))
    chosen = []
    for param in params:
        if param.name in given:
            table, value = given[param.name]
            dist = _parse(f"{table} {param.name}", value)
        else:
            dist = param.default
        if dist is not None:
            chosen.append((param, dist))
    return Space(target, model, tuple(chosen))


def _parse(where: str, value: Any) -> Dist | None:
    if value == OFF:
        return None  # not searched, left at the config's value
    if not isinstance(value, Mapping):
        return Fixed(value)
    keys = set(value)
    if "choices" in keys:
        if keys != {"choices"}:
            raise ConfigError(f"{where}: a categorical range has only 'choices' (got {keys})")
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list (got {choices!r})")
        return Choice(tuple(choices))
    unknown = keys - {"low", "high", "log", "step"}
    if unknown or not {"low", "high"} <= keys:
        raise ConfigError(
            f"{where}: a range is {{low = ..., high = ...}} with optional log and step, or "
            f"{{choices = [...]}} (got {dict(value)!r})"
        )
    low, high = value["low"], value["high"]
    for end in (low, high):
        if isinstance(end, bool) or not isinstance(end, int | float):
            raise ConfigError(f"{where}: low and high must be numbers (got {end!r})")
    if not low < high:
        raise ConfigError(f"{where}: empty or inverted range: low {low!r} must be < high {high!r}")
    log = value.get("log", False)
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got {low!r})")
    step = value.get("step")
    if step is not None and (step <= 0 or step > high - low):
        raise ConfigError(f"{where}: step must be in (0, high - low] (got {step!r})")
    if step is not None and log:
        raise ConfigError(f"{where}: give log or step, not both")
    return Range(low, high, bool(log), step)
