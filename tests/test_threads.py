"""``import ntklit`` limits the host BLAS libraries to one thread (see ``ntklit._threads``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ntklit import _threads

PROBE = (
    "import json, ntklit, scipy.linalg\n"
    "from threadpoolctl import threadpool_info\n"
    "print(json.dumps([i['num_threads'] for i in threadpool_info()"
    " if i['user_api'] == 'blas']))"
)


def _threads_after_import(value: str | None) -> list[int]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NTKLIT_BLAS_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    }
    if value is not None:
        env["NTKLIT_BLAS_THREADS"] = value
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_limits_every_blas_library_to_one_thread():
    counts = _threads_after_import(None)
    assert counts and all(n == 1 for n in counts), counts


def test_environment_variable_sets_the_limit_and_zero_leaves_blas_alone():
    two = _threads_after_import("2")
    assert two and all(n == 2 for n in two), two
    if (os.cpu_count() or 1) > 1:  # OpenBLAS' default is one thread per core
        assert max(_threads_after_import("0")) > 1


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_thread_counts_are_rejected(bad):
    with pytest.raises(ValueError, match="threads must be an int >= 0"):
        _threads.limit_blas_threads(bad)


def test_bad_environment_value_is_rejected(monkeypatch):
    monkeypatch.setenv("NTKLIT_BLAS_THREADS", "many")
    with pytest.raises(ValueError, match="NTKLIT_BLAS_THREADS must be an int >= 0"):
        _threads.limit_blas_threads()
