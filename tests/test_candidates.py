"""candidates/: each packaged model is a sealed model folder that a weights folder accepts as it is
(so the validation tables of reports/training_v3.md reproduce from it without the training run),
and each run state kept beside one belongs to a packaged model."""

from conftest import REPO_ROOT
from lesionlib import registry

CANDIDATES = REPO_ROOT / "candidates"


def test_every_candidate_is_a_sealed_model_folder():
    packaged = {folder.name for folder in CANDIDATES.iterdir() if (folder / "card.json").is_file()}
    catalogue = registry.discover(CANDIDATES)
    assert packaged <= set(catalogue.cards), catalogue.problems


def test_every_run_state_belongs_to_a_packaged_candidate():
    for run in CANDIDATES.glob("*.run"):
        assert (run / "state.json").is_file(), f"{run.name}: expected a state.json"
        assert (CANDIDATES / run.name.removesuffix(".run") / "card.json").is_file(), (
            f"{run.name}: no packaged candidate {run.name.removesuffix('.run')}/ beside it")


def test_a_shipped_model_is_no_longer_a_candidate():
    """A candidate is a new model or another version of a shipped one, never what ships."""
    shipped = registry.discover(REPO_ROOT / "weights").cards
    waiting = registry.discover(CANDIDATES).cards
    same = sorted(model_id for model_id, card in waiting.items()
                  if model_id in shipped and shipped[model_id].version == card.version)
    assert not same, f"shipped and still in candidates/, same version: {same}"
