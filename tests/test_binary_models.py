"""Binary melanoma models brought in with ``import-model --binary-melanoma``: imported, predicted,
explained, evaluated on the melanoma question, refused where they do not belong, and shown in
Case review, Compare and the audit page without seven-class bars."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from lesionlib import evaluation, explain, inference, model_import, registry
from lesionlib.classes import BINARY_CLASS_NAMES
from lesionlib.cli import main
from lesionlib.model_import import ImportRefused, ImportRequest


def melanoma_model(outputs: int = 1):
    """A tiny convolutional melanoma model: one sigmoid output, or a softmax over two."""
    import keras

    keras.utils.set_random_seed(5)
    image = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_last")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, keras.layers.Dense(
        outputs, activation="sigmoid" if outputs == 1 else "softmax")(x))


def saved(model, tmp_path, name="melanoma.keras"):
    path = tmp_path / name
    model.save(path)
    return path


def imported(weights, tmp_path, outputs=1, melanoma_output=None, model_id="outside.melanoma"):
    request = ImportRequest(file=saved(melanoma_model(outputs), tmp_path), model_id=model_id,
                            name="Outside melanoma CNN", scaling="0-1", binary_melanoma=True,
                            melanoma_output=melanoma_output)
    return model_import.import_model(request, weights)


def test_a_sigmoid_model_comes_in_as_other_and_melanoma(weights, tmp_path):
    card = imported(weights, tmp_path)
    assert card.is_binary and card.class_names == BINARY_CLASS_NAMES and card.melanoma_index == 1
    assert card.task == "melanoma vs the rest (binary)"
    assert any(item.startswith("Binary: answers melanoma vs the rest only")
               for item in card.limitations)
    assert not any(item.startswith("Seven classes only") for item in card.limitations)
    assert "--binary-melanoma" in card.reproduce["import"]
    classifier = registry.load_classifier(card.id, catalogue=registry.discover(weights))
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype("uint8")
    melanoma = float(np.asarray(melanoma_model()(image[None].astype("float32") / 255.0))[0, 0])
    probabilities = classifier.predict_proba([image])[0]
    assert probabilities == pytest.approx([1 - melanoma, melanoma], abs=1e-5)
    prediction = inference.to_predictions(card, probabilities[None])[0]
    assert prediction.binary and prediction.melanoma_probability == pytest.approx(melanoma)
    # the answer follows the threshold, not the 50% argmax
    assert prediction.top_class == ("mel" if melanoma >= card.melanoma_threshold else "other")
    heatmap = explain.Explainer(classifier.members[0]).compute_map(image, 1, "Grad-CAM")
    assert np.isfinite(heatmap).all()


def test_two_softmax_outputs_are_put_in_order(weights, tmp_path):
    card = imported(weights, tmp_path, outputs=2, melanoma_output=0)
    classifier = registry.load_classifier(card.id, catalogue=registry.discover(weights))
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3)).astype("uint8")
    raw = np.asarray(melanoma_model(2)(image[None].astype("float32") / 255.0))[0]
    assert classifier.predict_proba([image])[0] == pytest.approx(raw[::-1], abs=1e-5)


@pytest.mark.parametrize("outputs, melanoma_output, message", [
    (7, None, r"expected \(None, 1\), one melanoma probability"),
    (2, None, "--melanoma-output 0 or 1"),
    (1, 1, "single output"),
])
def test_outputs_that_are_no_melanoma_answer_are_refused(weights, tmp_path, outputs,
                                                         melanoma_output, message):
    import keras

    keras.utils.set_random_seed(6)
    image = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3, name="c")(image))
    model = keras.Model(image, keras.layers.Dense(outputs, activation="softmax"
                                                  if outputs > 1 else "sigmoid")(x))
    with pytest.raises(ImportRefused, match=message):
        model_import.import_model(ImportRequest(
            file=saved(model, tmp_path), model_id="bad.melanoma", name="Bad",
            binary_melanoma=True, melanoma_output=melanoma_output), weights)
    assert not (weights / "bad.melanoma").exists()


def test_the_command_line_takes_binary_models_and_refuses_mixed_declarations(
        weights, tmp_path, capsys):
    path = saved(melanoma_model(), tmp_path)
    assert main(["import-model", str(path), "--id", "cli.melanoma", "--name", "CLI melanoma",
                 "--binary-melanoma", "--weights", str(weights)]) == 0
    assert registry.discover(weights).cards["cli.melanoma"].is_binary
    assert main(["import-model", str(path), "--id", "other.melanoma", "--name", "X",
                 "--binary-melanoma", "--classes", "akiec,bcc,bkl,df,mel,nv,vasc",
                 "--weights", str(weights)]) == 2
    assert "choose one" in capsys.readouterr().err
    assert main(["import-model", str(path), "--id", "other.melanoma", "--name", "X",
                 "--melanoma-output", "1", "--weights", str(weights)]) == 2
    assert "add --binary-melanoma" in capsys.readouterr().err
    # an ensemble averages seven-class probabilities: a binary member is refused
    assert main(["ensemble", "--id", "mixed.ensemble", "--name", "Mixed", "--members",
                 "tiny0.test", "cli.melanoma", "--weights", str(weights)]) == 2
    assert "binary melanoma model" in capsys.readouterr().err


def _binary_frame(rng, n: int, set_folder: str, separation: float) -> pd.DataFrame:
    melanoma = (np.arange(n) % 4 == 0).astype(int)
    labels = pd.DataFrame({"image_id": [f"img{i}" for i in range(n)],
                           "file": [f"img{i}.jpg" for i in range(n)],
                           "label": np.where(melanoma == 1, 4, 5), "melanoma": melanoma})
    logit = rng.normal(size=n) + separation * (2 * melanoma - 1)
    mel = 1 / (1 + np.exp(-logit))
    return evaluation.prediction_frame(labels, np.stack([1 - mel, mel], axis=1), set_folder,
                                       BINARY_CLASS_NAMES)


def test_a_binary_model_is_scored_on_the_melanoma_question_on_every_set():
    rng = np.random.default_rng(0)
    uncalibrated = {"ham10000_val": _binary_frame(rng, 200, "ham10000", 1.5),
                    "ham10000_test": _binary_frame(rng, 200, "ham10000", 1.5),
                    "isic2017": _binary_frame(rng, 120, "isic2017", 0.5)}
    result = evaluation.calibrate_and_score(uncalibrated)
    for set_name, report in result.metrics.items():
        assert {"melanoma_auc", "melanoma_sensitivity", "melanoma_specificity",
                "n"} <= set(report), set_name
        assert "balanced_accuracy" not in report and "per_class" not in report
    assert result.metrics["ham10000_test"]["melanoma_auc"] > 0.75
    stored = result.predictions["ham10000_test"]
    assert set(stored["prediction"]) <= {"mel", "other"}
    expected = np.where(stored["mel"] >= result.threshold, "mel", "other")
    assert (stored["prediction"] == expected).all()  # the answer follows the threshold
    assert result.metrics["isic2017"]["melanoma_auc"] < result.metrics["ham10000_test"][
        "melanoma_auc"]


# ----------------------------------------------------------------------------- pages

@pytest.fixture()
def binary_pages(weights, tmp_path, monkeypatch):
    """Tiny weights plus an imported binary model, with fake stored predictions for all."""
    from page_fixtures import add_fake_predictions, use_page_environment

    imported(weights, tmp_path)
    add_fake_predictions(weights)
    use_page_environment(monkeypatch, weights, tmp_path)
    return weights


@pytest.mark.slow
def test_case_review_shows_a_binary_model_without_seven_class_bars(binary_pages):
    from test_pages import assert_ok, open_page, texts

    app = open_page("case_review")
    app.selectbox(key="case_review_model").set_value("outside.melanoma").run()
    assert_ok(app)
    content = texts(app)
    assert "Melanoma question" in content and "operating threshold" in content
    assert "binary: melanoma vs the rest" in content and "names no other diagnosis" in content
    assert "Top diagnosis" not in content
    assert not app.get("plotly_chart")  # no probability bars
    class_box = next(box for box in app.selectbox
                     if box.key and box.key.startswith("case_review_class_"))
    assert [option.split(" ")[0] for option in class_box.options] == ["other", "mel"]
    assert class_box.value == "mel"
    assert "Do you agree with its melanoma answer?" in [radio.label for radio in app.radio]


@pytest.mark.slow
def test_compare_meets_binary_and_seven_class_models_on_the_melanoma_question(binary_pages):
    from test_pages import assert_ok, open_page, texts

    app = open_page("compare")
    app.multiselect(key="compare_models").set_value(["outside.melanoma", "tiny0.test",
                                                     "tiny1.test"]).run()
    assert_ok(app)
    content = texts(app)
    assert "On the melanoma question" in content
    assert "Melanoma question" in content and "Top diagnosis" in content
    next(tab for tab in app.tabs if tab.label == "Record on the test split")
    assert "compared on the melanoma question" in content
    assert "answer to the melanoma question" in content


@pytest.mark.slow
def test_the_audit_reports_auc_sensitivity_and_specificity_of_a_binary_model(binary_pages):
    from test_pages import assert_ok, open_page, texts

    app = open_page("audit")
    app.selectbox(key="audit_model").set_value("outside.melanoma").run()
    assert_ok(app)
    content = texts(app)
    assert "Melanoma AUC" in content and "Sensitivity at its threshold" in content
    assert "Specificity at its threshold" in content and "Confusion matrix" not in [
        tab.label for tab in app.tabs]
    app.radio(key="audit_binary_kind").set_value("false_alarm").run()
    assert_ok(app)
    assert "false alarms" in texts(app)


@pytest.mark.slow
def test_the_quiz_leaves_binary_models_out(binary_pages):
    from test_pages import assert_ok, open_page

    app = open_page("teaching")
    assert_ok(app)
    box = app.selectbox(key="teaching_model_choice")
    assert "Outside melanoma CNN v1.0.0" not in box.options
    assert "Tiny test model 0 v1.0.0" in box.options
    assert any("Binary melanoma models are left out here" in str(caption.value)
               for caption in app.sidebar.caption)


def test_commands_that_need_seven_classes_refuse_a_binary_model(weights, tmp_path, capsys):
    imported(weights, tmp_path)
    for command in (["stress-test", "--model", "outside.melanoma"],
                    ["export", "--model", "outside.melanoma"]):
        assert main([*command, "--weights", str(weights)]) == 2, command
        assert "needs a seven-class model" in capsys.readouterr().err
