"""The README's model table repeats reports/evaluation.json: every figure in it, to three places."""

import json
import re

from conftest import REPO_ROOT


def _readme_model_rows():
    """{model id: [version, test BA, test AUC, ISIC 2017 AUC, PH2 AUC, BCN BA, BCN AUC, ECE]}."""
    text = (REPO_ROOT / "README.md").read_text()
    table = text.split("## The models", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        match = re.fullmatch(r"`([\w.]+)`", cells[0])
        if not match:
            continue
        isic, ph2 = cells[6].split(" / ")
        bcn_ba, bcn_auc = cells[7].split(" / ")
        rows[match.group(1)] = [cells[1], cells[4], cells[5], isic, ph2, bcn_ba, bcn_auc, cells[8]]
    return rows


def _report_row(entry):
    metrics = entry["metrics"]
    figures = [metrics["ham10000_test"]["balanced_accuracy"], metrics["ham10000_test"]["melanoma_auc"],
               metrics["isic2017"]["melanoma_auc"], metrics["ph2"]["melanoma_auc"],
               metrics["bcn20000_test"]["balanced_accuracy"], metrics["bcn20000_test"]["melanoma_auc"],
               metrics["ham10000_test"]["ece"]]
    return [entry["version"], *(f"{value:.3f}" for value in figures)]


def test_the_readme_model_table_matches_the_evaluation_report():
    report = json.loads((REPO_ROOT / "reports" / "evaluation.json").read_text())["models"]
    readme = _readme_model_rows()
    assert set(readme) == set(report), (
        f"README lists {sorted(readme)}; reports/evaluation.json has {sorted(report)}")
    for model_id, row in readme.items():
        assert row == _report_row(report[model_id]), (
            f"README row of {model_id} reads {row}; reports/evaluation.json gives "
            f"{_report_row(report[model_id])} (version, test BA, test AUC, ISIC 2017, PH2, "
            "BCN20000 BA, BCN20000 AUC, ECE)")
