"""Smoke test of benchmarks/bench_features.py at a tiny size: it runs end to end and writes
every method (the sketch with both tensor-power constructions) with sane measurements."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location(
        "bench_features", ROOT / "benchmarks" / "bench_features.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_features_tiny(tmp_path):
    out = tmp_path / "features.json"
    res = _load().main(
        [
            "--sizes",
            "40",
            "80",
            "--exact-max-n",
            "40",
            "--dims",
            "16",
            "--n-val",
            "20",
            "--n-test",
            "20",
            "--out",
            str(out),
        ]
    )
    on_disk = json.loads(out.read_text())
    assert on_disk["results"] == res["results"]
    rows = {(r["method"], r["N"]) for r in res["results"]}
    methods = ["random_features", "orthogonal_features", "sketch", "sketch_tree"]
    assert rows == {("exact", 40)} | {(k, n) for k in methods for n in (40, 80)}
    for r in res["results"]:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["wall_s"] > 0 and r["cpu_s"] >= 0
    assert set(res["summary"]["sketch_tree / sketch CPU time, m=16, by N"]) == {"40", "80"}
    assert "sketch_tree vs exact at N=40, m=16" in res["summary"]


def test_bench_features_rejects_bad_sizes():
    with pytest.raises(SystemExit):
        _load().main(["--sizes", "5"])
