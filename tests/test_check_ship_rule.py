"""scripts/pipelines/check_ship_rule.py: a changed model must rise on both validation splits and
not fall on the external sets."""

import importlib.util

import pytest

from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location(
    "check_ship_rule", REPO_ROOT / "scripts" / "pipelines" / "check_ship_rule.py")
check_ship_rule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_ship_rule)

SPLITS = ("ham10000_val", "bcn20000_val", "isic2017", "ph2", "bcn20000_test")


def model(version: str, figure: float, **overrides) -> dict:
    metrics = {split: {"balanced_accuracy": figure, "melanoma_auc": figure} for split in SPLITS}
    for split, value in overrides.items():
        metrics[split] = {"balanced_accuracy": value, "melanoma_auc": value}
    return {"version": version, "metrics": metrics}


def test_a_model_that_rises_on_validation_and_holds_elsewhere_passes():
    [row] = check_ship_rule.check({"a": model("1.0.0", 0.5)},
                                  {"a": model("2.0.0", 0.5, ham10000_val=0.6, bcn20000_val=0.6)})
    assert row["holds"] and (row["was"], row["now"]) == ("1.0.0", "2.0.0")


def test_level_validation_or_a_lower_external_set_breaks_the_rule():
    before = {"level": model("1.0.0", 0.5), "ph2_down": model("1.0.0", 0.5)}
    after = {"level": model("2.0.0", 0.5, bcn20000_val=0.6),
             "ph2_down": model("2.0.0", 0.6, ph2=0.4999)}
    rows = {row["model"]: row for row in check_ship_rule.check(before, after)}
    assert not rows["level"]["holds"] and not rows["ph2_down"]["holds"]
    broken = [figure["label"] for figure in rows["ph2_down"]["figures"] if figure["holds"] is False]
    assert broken == ["PH2 mel. AUC"]
    assert "**0.5000 → 0.4999**" in check_ship_rule.markdown(list(rows.values()))


def test_unchanged_versions_are_skipped_and_a_missing_figure_is_not_a_failure():
    before = {"same": model("1.0.0", 0.5), "new": model("1.0.0", 0.5)}
    after = {"same": model("1.0.0", 0.1), "new": model("2.0.0", 0.6)}
    del after["new"]["metrics"]["ph2"]
    [row] = check_ship_rule.check(before, after)
    assert row["model"] == "new" and row["holds"]
    assert "not measured" in check_ship_rule.markdown([row])


def test_a_file_that_is_not_a_report_is_refused_with_what_was_expected(tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text("[]")
    with pytest.raises(ValueError, match=r"not an evaluation report.*lesionlib evaluate"):
        check_ship_rule.load_after(path)
    assert check_ship_rule.main(["--before", "HEAD", "--after", str(path)]) == 2
