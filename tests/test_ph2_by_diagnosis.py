"""scripts/benchmarks/ph2_by_diagnosis.py: PH2's melanoma AUC against each kind of naevus."""

import importlib.util

import pandas as pd
import pytest

from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location(
    "ph2_by_diagnosis", REPO_ROOT / "scripts" / "benchmarks" / "ph2_by_diagnosis.py")
ph2_by_diagnosis = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ph2_by_diagnosis)


def test_a_model_that_confuses_only_atypical_naevi_loses_only_that_auc():
    labels = pd.DataFrame({"image_id": [f"IMD{i}" for i in range(6)],
                           "clinical_diagnosis": ["melanoma", "melanoma", "common_nevus",
                                                  "common_nevus", "atypical_nevus",
                                                  "atypical_nevus"]})
    predictions = pd.DataFrame({"image_id": labels["image_id"][::-1].to_numpy(),
                                "melanoma": [0, 0, 0, 0, 1, 1],
                                "mel": [0.9, 0.95, 0.1, 0.2, 0.6, 0.8]})
    row = ph2_by_diagnosis.by_diagnosis(predictions, labels, 0.5)
    assert row["AUC vs common_nevus"] == 1.0
    assert row["AUC vs atypical_nevus"] == 0.0  # both atypical naevi above both melanomas
    assert row["median melanoma"] == pytest.approx(0.7)
