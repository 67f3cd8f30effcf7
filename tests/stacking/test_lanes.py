"""Lanes: each family's work in order on its own thread, at most ``lanes`` families at once."""

import threading
import time

import pytest

from kelp.stacking.lanes import Lanes


def test_families_run_side_by_side_but_never_twice_at_once() -> None:
    lock = threading.Lock()
    running: dict[str, int] = {}
    most = 0
    log: list[tuple[str, int]] = []

    def work(name: str, i: int) -> tuple[str, int]:
        nonlocal most
        with lock:
            running[name] = running.get(name, 0) + 1
            assert running[name] == 1, f"{name} twice at once"
            most = max(most, sum(running.values()))
        time.sleep(0.02)
        with lock:
            running[name] -= 1
            log.append((name, i))
        return name, i

    names = ("cnn", "lightgbm", "xgboost")
    with Lanes(names, lanes=2) as lanes:
        futures = [lanes.submit(n, lambda n=n, i=i: work(n, i)) for i in range(4) for n in names]
        results = [f.result() for f in futures]
    assert results == [(n, i) for i in range(4) for n in names]
    assert most == 2  # two at once, never three
    for name in names:  # each family's work in submission order
        assert [i for n, i in log if n == name] == [0, 1, 2, 3]


def test_one_lane_runs_in_the_calling_thread() -> None:
    with Lanes(("a", "b"), lanes=1) as lanes:
        future = lanes.submit("a", threading.get_ident)
    assert future.done() and future.result() == threading.get_ident()


@pytest.mark.parametrize("lanes", [1, 2])
def test_an_error_comes_back_through_its_future(lanes: int) -> None:
    def fail() -> None:
        raise ValueError("tile T1: a normalised input would hold NaN")

    with Lanes(("a", "b"), lanes) as running:
        bad = running.submit("a", fail)
        good = running.submit("a", lambda: 3)
        with pytest.raises(ValueError, match="would hold NaN"):
            bad.result()
        assert good.result() == 3  # the family goes on after a failure
