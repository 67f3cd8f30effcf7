"""`kelp run --cluster local:2` gives the same run folder as the plain run it is compared with
(the fault tests' uninterrupted reference: features built in one process, trees and torch on
one thread each, as the cluster's workers run them)."""

from pathlib import Path

import pytest

from tests.pipeline.test_faults import (
    differences,
    kelp_run,
    leftovers,
    read_run_json,
    reference,  # noqa: F401  (the shared fixture)
    run_dir,
    write_config,
)

pytestmark = pytest.mark.slow


def _expected(difference: str) -> bool:
    """Differences a cluster run has by nature: its config names the cluster, and the
    global Python RNG saved with a CNN checkpoint is shared with the Dask worker's own
    threads (kelp draws nothing from it; the weights and maps are compared in full)."""
    return difference.startswith("config.json: /cluster/address: None != 'local:2'") or (
        "/last/state.pt: /rng/python" in difference
    )


def test_kelp_run_on_local_cluster_equals_plain_run(reference: Path, tmp_path: Path) -> None:  # noqa: F811
    config = write_config(tmp_path)
    done = kelp_run(config, options=("--cluster", "local:2"))
    assert done.returncode == 0, done.tail()
    assert "Traceback" not in done.stderr + done.stdout, done.tail()
    assert "cluster local:2: 2 worker(s)" in done.stderr, done.tail()
    assert "trained on the cluster" in done.stderr
    assert "tiles predicted on the cluster" in done.stderr
    run = run_dir(config)
    assert all(e["status"] == "done" for e in read_run_json(run)["stages"].values())
    assert leftovers(run) == []
    unexpected = [d for d in differences(reference, run) if not _expected(d)]
    assert unexpected == []
    # the comparison did see the cluster's config: it is not vacuous
    assert any(_expected(d) for d in differences(reference, run))
