"""Model cards validate on load; tampered, unknown or unsafe model files are refused."""

import json
import shutil

import pytest

import keras

from lesionlib import registry
from lesionlib.cards import (CardError, ModelIntegrityError, normalise_command, read_card,
                             sha256_of, shell_command, validate_card_data, write_card)
from lesionlib.integrity import seal
from lesionlib.packaging import single_card_data


@pytest.fixture
def weights_copy(tiny_weights_dir, tmp_path):
    target = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, target)
    return target


def _card_json(folder):
    return json.loads((folder / "card.json").read_text())


def test_valid_card_reads_back(tiny_weights_dir):
    card = read_card(tiny_weights_dir / "tiny0.test")
    assert card.id == "tiny0.test" and card.kind == "single"
    assert "not a diagnostic device" in card.intended_use.lower()
    assert "CC BY-NC 4.0" in card.licence


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("temperature"), "missing field 'temperature'"),
    (lambda d: d.update(temperature="warm"), "'temperature' should be float"),
    (lambda d: d.update(class_names=["mel", "nv"]), "class_names"),
    (lambda d: d.update(melanoma_threshold=1.5), "melanoma_threshold"),
    (lambda d: d.update(kind="committee"), "kind"),
    (lambda d: d.update(weights_file="../../etc/passwd"), "plain file name"),
])
def test_invalid_cards_are_refused_with_the_field_named(tiny_weights_dir, change, message):
    data = _card_json(tiny_weights_dir / "tiny0.test")
    change(data)
    with pytest.raises(CardError, match=message):
        validate_card_data(data)


def test_tampered_weights_are_refused_and_others_still_load(weights_copy):
    weights_file = weights_copy / "tiny0.test" / "model.keras"
    weights_file.write_bytes(weights_file.read_bytes() + b"tampered")
    catalogue = registry.discover(weights_copy)
    assert "model.keras" in catalogue.problems["tiny0.test"]
    with pytest.raises(KeyError, match="refused.*model.keras.*sha256"):
        registry.load_classifier("tiny0.test", catalogue=catalogue)
    with pytest.raises(CardError, match="tiny0.test"):
        registry.load_classifier("ensemble.ham10000", catalogue=catalogue)
    assert registry.load_classifier("tiny1.test", catalogue=catalogue).card.id == "tiny1.test"


def test_resealed_weights_are_still_refused_by_the_card_hash(weights_copy):
    weights_file = weights_copy / "tiny0.test" / "model.keras"
    weights_file.write_bytes(weights_file.read_bytes() + b"tampered")
    seal(weights_copy / "tiny0.test")  # the manifest now agrees; the card's sha256 does not
    catalogue = registry.discover(weights_copy)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        registry.load_classifier("tiny0.test", catalogue=catalogue)


def test_broken_card_is_listed_as_a_problem_not_raised(weights_copy):
    (weights_copy / "tiny1.test" / "card.json").write_text("{not json")
    catalogue = registry.discover(weights_copy)
    assert "tiny1.test" in catalogue.problems and "tiny0.test" in catalogue.cards
    with pytest.raises(KeyError, match="refused"):
        registry.get_card("tiny1.test", catalogue)


def test_unknown_model_id_suggests_close_ids(tiny_weights_dir):
    with pytest.raises(KeyError, match="Did you mean"):
        registry.load_classifier("tiny0.tset", tiny_weights_dir)


def test_model_with_arbitrary_code_is_refused_in_safe_mode(tmp_path):
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(outputs)
    outputs = keras.layers.Dense(7, activation="softmax")(outputs)
    folder = tmp_path / "weights" / "lambda.test"
    folder.mkdir(parents=True)
    keras.Model(inputs, outputs).save(folder / "model.keras")
    card_data = single_card_data("lambda.test", "Lambda", "small_cnn", 32, "unit",
                                 "dense", sha256_of(folder / "model.keras"), training={})
    write_card(validate_card_data(card_data), folder)  # the hash matches: safe mode refuses
    seal(folder)
    with pytest.raises(CardError, match="could not be loaded safely") as caught:
        registry.load_classifier("lambda.test", tmp_path / "weights")
    message = str(caught.value)
    assert "Lambda" in message and "custom Python code is refused." in message
    assert "If you trust the )" not in message  # the Keras hint was cut mid-sentence


@pytest.mark.parametrize("recorded, expected", [
    ("/work/main/lesionlib/__main__.py package --run-dir runs/a --id a.b --name Lite0 (fast, "
     "mobile) --description Small: fit for phones.",
     "python -m lesionlib package --run-dir runs/a --id a.b --name 'Lite0 (fast, mobile)' "
     "--description 'Small: fit for phones.'"),
    ("python -m lesionlib ensemble --id e --name E --members a.b c.d",
     "python -m lesionlib ensemble --id e --name E --members a.b c.d"),
    ("python -m lesionlib train --arch small_cnn --size 96 --run-dir REPO/runs/x",
     "python -m lesionlib train --arch small_cnn --size 96 --run-dir runs/x"),
    ("python -m x", "python -m x"),  # not a lesionlib command: unchanged
])
def test_reproduce_commands_are_normalised_to_pasteable_lines(recorded, expected):
    from lesionlib.cards import REPO_ROOT

    assert normalise_command(recorded.replace("REPO", str(REPO_ROOT))) == expected
    assert normalise_command(expected) == expected


def test_written_cards_hold_pasteable_reproduce_commands(weights_copy):
    import dataclasses
    import shlex

    from lesionlib.cards import REPO_ROOT

    argv = [str(REPO_ROOT / "lesionlib" / "__main__.py"), "package", "--run-dir",
            str(REPO_ROOT / "runs" / "x"), "--name", "Lite0's (new)", "--description", ""]
    card = read_card(weights_copy / "tiny0.test")
    write_card(dataclasses.replace(card, reproduce={"package": shell_command(argv)}),
               weights_copy / "tiny0.test")
    written = _card_json(weights_copy / "tiny0.test")["reproduce"]["package"]
    assert written.startswith("python -m lesionlib package ")
    assert shlex.split(written)[3:] == ["package", "--run-dir", "runs/x", "--name",
                                        "Lite0's (new)", "--description", ""]


def test_the_single_valued_options_table_matches_the_parser():
    """cards.normalise_command reads which options take one value from data (so the cards do
    not import the command line); the table must say what the parser says."""
    import argparse

    from lesionlib.cli import build_parser
    from lesionlib.command_options import SINGLE_VALUED_OPTIONS

    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction)).choices
    from_parser = {name: frozenset(option for action in parser._actions if action.nargs is None
                                   for option in action.option_strings)
                   for name, parser in commands.items()}
    assert SINGLE_VALUED_OPTIONS == from_parser
