"""scripts/pipelines/rebuild_derived.sh: what is rebuilt after a model's weights change, read from the
shipped cards (DRY_RUN prints the commands instead of running them)."""

from __future__ import annotations

import os
import subprocess

from conftest import REPO_ROOT


SCRIPT = REPO_ROOT / "scripts" / "pipelines" / "rebuild_derived.sh"


def planned(*arguments: str) -> list[str]:
    result = subprocess.run(["bash", str(SCRIPT),
                             *arguments], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DRY_RUN": "1"})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_lite2_brings_its_edge_export_index_and_the_ensemble_that_contains_it():
    assert planned("--had-index", "efficientnet_lite2.ham10000") == [
        "+ python -m lesionlib export --model efficientnet_lite2.ham10000 --format tflite --int8",
        "+ python -m lesionlib evaluate --summary-only",  # the export's figures in the report
        "+ python -m lesionlib similar --build --model efficientnet_lite2.ham10000",
        "+ python scripts/benchmarks/retrieval_report.py",
        "+ python -m lesionlib quiz-reveals --model ensemble.ham10000",
        "+ bash scripts/pipelines/build_embedding_maps.sh efficientnet_lite2.ham10000",
        "+ python scripts/benchmarks/benchmark_quality_gate.py --model efficientnet_lite2.ham10000 "
        "--model efficientnet_lite2.ham10000.int8 --model ensemble.ham10000",
        "+ python scripts/benchmarks/label_audit_report.py",
        "+ nice -n 10 python scripts/benchmarks/heatmap_faithfulness.py"]


def test_a_model_outside_every_ensemble_and_without_exports_rebuilds_only_its_own():
    commands = planned("small_cnn.ham10000")
    assert not any("export" in line or "similar" in line or "summary" in line
                   for line in commands)
    assert ("+ python scripts/benchmarks/benchmark_quality_gate.py --model small_cnn.ham10000"
            in commands)


def test_a_redefined_ensemble_gets_its_reveals_and_gate_row_even_without_a_changed_member():
    """ship_models.sh names the ensemble it defined anew: its members may all be unchanged."""
    commands = planned("--had-index", "efficientnet_lite1.ham10000", "ensemble.ham10000")
    assert commands.count("+ python -m lesionlib quiz-reveals --model ensemble.ham10000") == 1
    assert ("+ python scripts/benchmarks/benchmark_quality_gate.py --model "
            "efficientnet_lite1.ham10000 --model ensemble.ham10000") in commands
    assert not any(line.endswith(("similar --build --model ensemble.ham10000",
                                  "build_embedding_maps.sh efficientnet_lite1.ham10000 "
                                  "ensemble.ham10000")) for line in commands)
    alone = planned("ensemble.ham10000")
    assert not any("similar" in line or "embedding" in line for line in alone)
    assert "+ python -m lesionlib quiz-reveals --model ensemble.ham10000" in alone


def test_no_model_is_a_usage_error():
    result = subprocess.run(["bash", str(SCRIPT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage: bash scripts/pipelines/rebuild_derived.sh" in result.stderr
