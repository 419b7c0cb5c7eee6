"""scripts/pipelines/ship_candidate.sh refuses a candidate it cannot trust before packaging it."""

import json
import os
import shutil
import subprocess

from conftest import REPO_ROOT
from lesionlib.integrity import seal

SCRIPT = REPO_ROOT / "scripts" / "pipelines" / "ship_candidate.sh"


def candidate_tree(tmp_path, tiny_weights_dir):
    """A copy of the script in a tree of its own, with tiny0.test sealed as a candidate whose
    card records its training run (the script packages from it)."""
    (tmp_path / "scripts" / "pipelines").mkdir(parents=True)
    shutil.copy(SCRIPT, tmp_path / "scripts" / "pipelines")
    sealed = tmp_path / "candidates" / "tiny0.test"
    shutil.copytree(tiny_weights_dir / "tiny0.test", sealed)
    card = json.loads((sealed / "card.json").read_text())
    card["training"]["run"] = {"folder": "runs-x/tiny0", "checkpoint_sha256": "0" * 64}
    (sealed / "card.json").write_text(json.dumps(card))
    seal(sealed)
    (tmp_path / "candidates" / "tiny0.test.run").mkdir()
    (tmp_path / "candidates" / "tiny0.test.run" / "state.json").write_text("{}")
    return sealed


def ship(tree):
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(["bash", str(tree / "scripts" / "pipelines" / "ship_candidate.sh"),
                           "tiny0.test", "2.0.0", "Tiny", "a tiny model", "none"],
                          capture_output=True, text=True, timeout=120, env=environment)


def test_a_candidate_changed_after_sealing_is_refused_before_packaging(tmp_path,
                                                                        tiny_weights_dir):
    sealed = candidate_tree(tmp_path, tiny_weights_dir)
    with (sealed / "model.keras").open("ab") as weights:
        weights.write(b"changed")
    result = ship(tmp_path)
    assert result.returncode != 0
    assert "is not a sealed candidate with its run recorded" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs-x").exists() and not (tmp_path / "weights").exists()


def test_a_candidate_without_its_run_is_refused(tmp_path, tiny_weights_dir):
    sealed = candidate_tree(tmp_path, tiny_weights_dir)
    card = json.loads((sealed / "card.json").read_text())
    del card["training"]["run"]
    (sealed / "card.json").write_text(json.dumps(card))
    seal(sealed)
    result = ship(tmp_path)
    assert result.returncode != 0 and "its run recorded ('run')" in result.stderr
    assert not (tmp_path / "runs-x").exists()
