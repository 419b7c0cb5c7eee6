"""`python -m lesionlib describe`: a shipped model's description changes without repackaging."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lesionlib import cli, registry
from lesionlib.card_description import MAX_DESCRIPTION_CHARS, DescriptionError, redescribe
from lesionlib.cards import CardError, read_card
from lesionlib.integrity import IntegrityError, verify_folder


def test_describe_rewrites_the_card_records_the_command_and_reseals(weights, capsys,
                                                                    monkeypatch):
    folder = weights / "tiny0.test"
    before = read_card(folder)
    argv = ["describe", "--model", "tiny0.test", "--weights", str(weights),
            "--description", "  The ensemble's   first member.\n"]
    # as `python -m lesionlib ...` leaves it: the command recorded is read from sys.argv
    monkeypatch.setattr(sys, "argv", [str(Path(cli.__file__).with_name("__main__.py")), *argv])
    assert cli.main(argv) == 0
    assert "description changed, card resealed" in capsys.readouterr().out
    verify_folder(folder)  # resealed: the catalogue still takes it
    after = registry.read_verified_card(folder)
    assert after.description == "The ensemble's first member."
    assert after.reproduce["describe"].startswith("python -m lesionlib describe --model "
                                                  "tiny0.test")
    assert "--weights" in after.reproduce["describe"]
    # nothing else on the card moves
    assert (after.version, after.weights_sha256, after.metrics, after.training) == \
        (before.version, before.weights_sha256, before.metrics, before.training)
    assert {k: v for k, v in after.reproduce.items() if k != "describe"} == before.reproduce


def test_the_same_text_writes_nothing(weights, capsys):
    folder = weights / "tiny1.test"
    redescribe(folder, "Second member.", "python -m lesionlib describe ...")
    manifest = (folder / "manifest.json").read_bytes()
    card, changed = redescribe(folder, " Second  member. ", "another command")
    assert not changed and card.reproduce["describe"] == "python -m lesionlib describe ..."
    assert (folder / "manifest.json").read_bytes() == manifest


@pytest.mark.parametrize("text, expected", [("   ", "empty description"),
                                            ("x" * (MAX_DESCRIPTION_CHARS + 1), "at most")])
def test_an_empty_or_overlong_description_is_refused_before_anything_is_written(
        weights, capsys, text, expected):
    card_bytes = (weights / "tiny0.test" / "card.json").read_bytes()
    with pytest.raises(DescriptionError, match=expected):
        redescribe(weights / "tiny0.test", text, "cmd")
    assert cli.main(["describe", "--model", "tiny0.test", "--weights", str(weights),
                     "--description", text]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and expected in error
    assert (weights / "tiny0.test" / "card.json").read_bytes() == card_bytes


def test_a_folder_changed_since_sealing_is_refused_not_resealed(weights, capsys):
    folder = weights / "tiny0.test"
    card = json.loads((folder / "card.json").read_text())
    card["metrics"] = {"forged": 1.0}
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(CardError):
        redescribe(folder, "New text.", "cmd")
    assert cli.main(["describe", "--model", "tiny0.test", "--weights", str(weights),
                     "--description", "New text."]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(IntegrityError):  # still refused: describe did not launder the change
        verify_folder(folder)


@pytest.mark.parametrize("model", ["nope.test", "../weights/tiny0.test"])
def test_an_unknown_model_names_the_installed_ones(weights, capsys, model):
    card_bytes = (weights / "tiny0.test" / "card.json").read_bytes()
    assert cli.main(["describe", "--model", model, "--weights", str(weights),
                     "--description", "Text."]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and model in error and "tiny0.test" in error
    assert (weights / "tiny0.test" / "card.json").read_bytes() == card_bytes


def test_the_card_is_written_next_to_the_folder_then_renamed(weights, monkeypatch):
    """No temporary file is ever among the sealed files: a kill mid-write would leave the folder
    valid (old card, old seal) rather than refused for an unlisted file."""
    import os

    from lesionlib import cards

    renames = []
    real_replace = os.replace
    monkeypatch.setattr(cards.os, "replace",
                        lambda source, target: (renames.append((Path(source), Path(target))),
                                                real_replace(source, target)))
    redescribe(weights / "tiny0.test", "Renamed in.", "cmd")
    (source, target), = [(source, target) for source, target in renames
                         if target.name == "card.json"]
    assert target == weights / "tiny0.test" / "card.json"
    assert source.parent == weights.resolve() and not source.exists()
    verify_folder(weights / "tiny0.test")
