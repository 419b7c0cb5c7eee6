"""import-model: tiny functional and nested Keras models are imported, predicted with and
explained; Lambda layers, wrong outputs and taken ids are refused with reasons."""

from __future__ import annotations


import numpy as np
import pytest

from lesionlib import explain, model_import, registry
from lesionlib.classes import CLASS_NAMES
from lesionlib.cli import main
from lesionlib.model_import import ImportRefused, ImportRequest

REVERSED = tuple(reversed(CLASS_NAMES))


def functional_model(outputs: int = 7, activation: str = "softmax"):
    import keras

    keras.utils.set_random_seed(3)
    image = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(image)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv_last")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, keras.layers.Dense(outputs, activation=activation)(x))


def nested_model():
    """The usual transfer-learning shape: Sequential([base, pooling, dense])."""
    import keras

    keras.utils.set_random_seed(4)
    base_input = keras.Input((32, 32, 3))
    base_output = keras.layers.Conv2D(5, 3, activation="relu", name="base_conv")(base_input)
    base = keras.Model(base_input, base_output, name="base")
    return keras.Sequential([keras.Input((32, 32, 3)), base,
                             keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(7, activation="softmax")])


def saved(model, tmp_path, name="model.keras"):
    path = tmp_path / name
    model.save(path)
    return path


def test_a_functional_model_is_imported_reordered_and_rescaled(weights, tmp_path):
    original = functional_model()
    request = ImportRequest(file=saved(original, tmp_path), model_id="outside.cnn",
                            name="Outside CNN", classes=REVERSED, scaling="0-1",
                            training_data="a private clinic set (declared)",
                            licence="CC BY 4.0 (declared)")
    card = model_import.import_model(request, weights)
    assert card.cam_layer == "conv_last" and card.input_size == 32
    assert card.training["data"] == "a private clinic set (declared)"
    assert card.licence == "CC BY 4.0 (declared)" and not card.calibrated
    assert "recipe" not in card.training and "lineage" not in card.training
    catalogue = registry.discover(weights)
    assert "outside.cnn" in catalogue.cards
    classifier = registry.load_classifier("outside.cnn", catalogue=catalogue)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype("uint8")
    expected = np.asarray(original(image[None].astype("float32") / 255.0))[0][::-1]
    assert classifier.predict_proba([image])[0] == pytest.approx(expected, abs=1e-5)
    heatmap = explain.Explainer(classifier.members[0]).compute_map(image, 4, "Grad-CAM")
    assert heatmap.shape[:2] and np.isfinite(heatmap).all()


def test_a_nested_model_is_flattened_for_grad_cam(weights, tmp_path):
    import keras

    original = nested_model()
    card = model_import.import_model(ImportRequest(file=saved(original, tmp_path),
                                                   model_id="nested.cnn", name="Nested"), weights)
    assert card.cam_layer == "base_conv"
    classifier = registry.load_classifier("nested.cnn", weights_dir=weights)
    assert not any(isinstance(layer, keras.Model)
                   for layer in classifier.members[0].keras_model.layers)
    image = np.full((32, 32, 3), 120, "uint8")
    expected = np.asarray(original(image[None].astype("float32")))[0]
    assert classifier.predict_proba([image])[0] == pytest.approx(expected, abs=1e-5)
    heatmap = explain.Explainer(classifier.members[0]).compute_map(image, 0, "Grad-CAM")
    assert np.isfinite(heatmap).all()


def test_a_lambda_layer_is_refused_with_what_to_do(weights, tmp_path):
    import keras

    image = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda tensor: tensor / 255.0)(image)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(image, keras.layers.Dense(7, activation="softmax")(x))
    with pytest.raises(ImportRefused, match="Lambda layer .* Replace it with built-in"):
        model_import.import_model(ImportRequest(file=saved(model, tmp_path), model_id="l.m",
                                                name="L"), weights)
    assert not (weights / "l.m").exists()


@pytest.mark.parametrize("model, message", [
    (lambda: functional_model(outputs=5), r"expected \(None, 7\)"),
    (lambda: functional_model(activation="linear"), "not probabilities"),
])
def test_outputs_that_do_not_match_the_classes_are_refused(weights, tmp_path, model, message):
    with pytest.raises(ImportRefused, match=message):
        model_import.import_model(ImportRequest(file=saved(model(), tmp_path), model_id="bad.m",
                                                name="Bad"), weights)
    assert not (weights / "bad.m").exists()


def test_declarations_and_ids_are_checked(weights, tmp_path):
    with pytest.raises(ImportRefused, match="once each"):
        model_import.parse_classes("mel,nv")
    path = saved(functional_model(), tmp_path)
    with pytest.raises(ImportRefused, match="exists already"):
        model_import.import_model(ImportRequest(file=path, model_id="tiny0.test", name="T"),
                                  weights)


def test_the_command_line_imports_and_says_what_comes_next(weights, tmp_path, capsys):
    path = saved(functional_model(), tmp_path)
    assert main(["import-model", str(path), "--id", "cli.cnn", "--name", "CLI CNN",
                 "--scaling", "0-1", "--weights", str(weights)]) == 0
    out = capsys.readouterr().out
    assert "NOT evaluated" in out and "python -m lesionlib evaluate --model cli.cnn" in out
    assert main(["import-model", str(tmp_path / "missing.keras"), "--id", "x.y", "--name", "X",
                 "--weights", str(weights)]) == 2
    assert "expected a Keras model file" in capsys.readouterr().err


@pytest.mark.slow
def test_an_imported_model_shows_in_compare_marked_not_evaluated(weights, tmp_path,
                                                                  monkeypatch):
    from page_fixtures import use_page_environment
    from test_pages import assert_ok, open_page, texts

    model_import.import_model(ImportRequest(file=saved(functional_model(), tmp_path),
                                            model_id="outside.cnn", name="Outside CNN",
                                            scaling="0-1"), weights)
    use_page_environment(monkeypatch, weights, tmp_path)
    app = open_page("compare")
    assert_ok(app)
    app.multiselect(key="compare_models").set_value(["outside.cnn", "tiny0.test"]).run()
    assert_ok(app)
    content = texts(app)
    assert "Outside CNN" in content and "Not evaluated" in content


def test_the_dashboards_job_releases_its_lock_and_reports_a_failed_evaluation(
        weights, tmp_path, monkeypatch, capsys):
    """Imported, then evaluation impossible (no dataset): progress 'failed', lock released."""
    import lesionlib.data
    from lesionlib import retraining_job

    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setenv("LESIONLIB_DATA", str(empty))
    monkeypatch.setattr(lesionlib.data, "SHARED_DATA", empty)
    token = retraining_job.acquire(weights, "job.cnn", "alice")
    path = saved(functional_model(), tmp_path)
    assert main(["import-model", str(path), "--id", "job.cnn", "--name", "Job CNN",
                 "--weights", str(weights), "--evaluate", "--job-token", token]) == 2
    status = retraining_job.status(weights)
    assert not status.running and status.progress["stage"] == "failed"
    assert "No ham10000 dataset folder found" in status.progress["error"]
    assert "job.cnn" in registry.discover(weights).cards  # the import itself stands


@pytest.mark.slow
def test_an_admin_starts_an_import_from_the_models_page(weights, tmp_path, monkeypatch):
    from lesionlib import retraining_job
    from page_fixtures import use_page_environment
    from test_pages import assert_ok, open_page

    started = {}
    monkeypatch.setattr(retraining_job, "start", lambda weights_dir, model_id, user, options,
                        env=None, command="": started.update(
                            model_id=model_id, options=options, command=command) or 4242)
    use_page_environment(monkeypatch, weights, tmp_path)
    path = saved(functional_model(), tmp_path)
    app = open_page("models")
    app.text_input(key="import_model_path").input(str(path))
    app.text_input(key="import_model_id").input("Bad Id!")
    app.text_input(key="import_model_name").input("Outside")
    next(button for button in app.button if button.label == "Import and evaluate").click()
    app.run()
    assert_ok(app)
    assert any("Give a model id" in error.value for error in app.error) and not started
    app.text_input(key="import_model_id").input("outside.cnn")
    app.selectbox(key="import_model_scaling").set_value("0-1")
    next(button for button in app.button if button.label == "Import and evaluate").click()
    app.run()
    assert_ok(app)
    assert started["command"] == "import-model" and started["model_id"] == "outside.cnn"
    assert started["options"][:1] == [str(path)] and "0-1" in started["options"]
    assert any("Importing outside.cnn in the background" in success.value
               for success in app.success)
