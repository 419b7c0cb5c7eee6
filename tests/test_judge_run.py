"""scripts/pipelines/judge_run.sh refuses what it cannot judge before copying anything."""

import subprocess

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "pipelines" / "judge_run.sh"


def test_an_id_that_is_not_shipped_is_a_usage_error(tmp_path):
    copy = tmp_path / "copy"
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "run"), "nosuch.ham10000",
                             str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "received 'nosuch.ham10000'" in result.stderr
    assert not copy.exists()


def test_no_argument_is_a_usage_error():
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage: bash scripts/pipelines/judge_run.sh" in result.stderr
