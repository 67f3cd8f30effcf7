import threading

import pytest

from kelp._prefetch import prefetched


@pytest.mark.parametrize("ahead", [0, 1, 3])
def test_results_in_order_like_a_plain_loop(ahead: int) -> None:
    assert list(prefetched(range(10), lambda x: x * x, ahead)) == [x * x for x in range(10)]
    assert list(prefetched([], lambda x: x, ahead)) == []


def test_work_runs_in_one_background_thread_ahead_of_the_caller() -> None:
    seen: list[str] = []
    started = threading.Event()

    def work(x: int) -> int:
        seen.append(threading.current_thread().name)
        if x == 1:
            started.set()
        return x

    results = prefetched(range(3), work, ahead=1)
    assert next(results) == 0
    assert started.wait(5)  # item 1 is computed while the caller still holds item 0
    assert list(results) == [1, 2]
    assert len(set(seen)) == 1 and seen[0] != threading.current_thread().name
    names = list(prefetched(range(2), lambda _: threading.current_thread().name, ahead=0))
    assert names == [threading.current_thread().name] * 2  # ahead=0: no thread


def test_an_error_is_raised_at_its_item() -> None:
    def work(x: int) -> int:
        if x == 2:
            raise ValueError(f"bad item {x}")
        return x

    results = prefetched(range(5), work, ahead=1)
    assert [next(results), next(results)] == [0, 1]  # everything before the bad item
    with pytest.raises(ValueError, match="bad item 2"):
        next(results)
    assert list(results) == []  # and nothing after it


def test_closing_early_starts_nothing_more() -> None:
    calls: list[int] = []

    def work(x: int) -> int:
        calls.append(x)
        return x

    results = prefetched(range(100), work, ahead=1)
    assert next(results) == 0
    results.close()
    assert len(calls) <= 3  # the item asked for, at most one ahead and one in flight
