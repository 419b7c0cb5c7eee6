"""candidates/: each packaged model is a sealed model folder that a weights folder accepts as it is
(so the validation tables of reports/training_v3.md reproduce from it without the training run)."""

from conftest import REPO_ROOT
from lesionlib import registry

CANDIDATES = REPO_ROOT / "candidates"


def test_every_candidate_is_a_sealed_model_folder():
    packaged = {folder.name for folder in CANDIDATES.iterdir() if (folder / "card.json").is_file()}
    catalogue = registry.discover(CANDIDATES)
    assert packaged and packaged <= set(catalogue.cards), catalogue.problems
