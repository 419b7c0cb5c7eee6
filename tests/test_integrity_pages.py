"""The Models page names a refused model's reason (no traceback) and shows pasteable commands."""

import json
import shlex

import pytest

from conftest import build_tiny_weights
from lesionlib.cards import REPO_ROOT
from lesionlib.integrity import TRUSTED_KEYS_ENV, seal
from page_fixtures import add_fake_predictions, use_page_environment
from test_pages import assert_ok, open_page

pytestmark = pytest.mark.slow


@pytest.fixture
def tampered_weights(tmp_path, monkeypatch):
    folder = build_tiny_weights(tmp_path / "weights")
    add_fake_predictions(folder)
    legacy = (f"{REPO_ROOT}/lesionlib/__main__.py package --run-dir {REPO_ROOT}/runs/tiny "
              "--id tiny0.test --name Tiny (test) --description A test model.")
    card_path = folder / "tiny0.test" / "card.json"  # as cards written before normalisation
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()),
                                     "reproduce": {"package": legacy}}))
    seal(folder / "tiny0.test")
    path = folder / "tiny1.test" / "card.json"
    data = json.loads(path.read_text())
    data["melanoma_threshold"] = 0.99
    path.write_text(json.dumps(data))
    use_page_environment(monkeypatch, folder, tmp_path)
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    return folder


def test_models_page_names_the_refused_model_and_shows_pasteable_commands(tampered_weights):
    app = open_page("models")
    assert_ok(app)
    warnings = [str(warning.value) for warning in app.warning]
    assert any("tiny1.test" in text and "card.json was changed" in text for text in warnings)
    labels = [expander.label for expander in app.expander]
    assert any("tiny0.test" in label for label in labels)
    assert not any("tiny1.test" in label for label in labels)
    commands = [str(block.value) for block in app.code]
    package = next(command for command in commands if " package " in command)
    assert package.startswith("python -m lesionlib package ") and str(REPO_ROOT) not in package
    assert shlex.split(package)[-6:] == ["--id", "tiny0.test", "--name", "Tiny (test)",
                                         "--description", "A test model."]
