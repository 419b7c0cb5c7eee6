"""Every CLI user error is one line on stderr and exit status 2; a bug keeps its traceback."""

import importlib.util
import json
import shutil

import pandas as pd
import pytest

import lesionlib.cli
import lesionlib.commands.training
from conftest import SAMPLE_DIR
from lesionlib.cli import main


@pytest.fixture
def weights(tiny_weights_dir, tmp_path):
    """A copy of the tiny weights folder that a command may (wrongly) try to change."""
    target = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, target)
    return target


def _fails_with(capsys, argv, *expected) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in captured.out + captured.err
    for text in expected:
        assert text in err
    return err


def test_fit_gate_user_errors(weights, tmp_path, capsys):
    _fails_with(capsys, ["fit-gate", "--weights", str(weights), "--model", "nope"],
                "Unknown model 'nope'", "tiny0.test")
    _fails_with(capsys, ["fit-gate", "--weights", str(weights), "--model", "ensemble.ham10000"],
                "combines its members' gates",
                "fit-gate --model tiny0.test")
    _fails_with(capsys, ["fit-gate", "--weights", str(weights), "--model", "tiny0.test",
                         "--data", str(tmp_path)], "has no labels.csv")
    (tmp_path / "labels.csv").write_text("file,label\nimages/a.jpg,0\n")
    _fails_with(capsys, ["fit-gate", "--weights", str(weights), "--model", "tiny0.test",
                         "--data", str(tmp_path)], "no 'split_lesion_grouped' or 'split' column")
    assert not (weights / "tiny0.test" / "quality_gate.npz").exists()


def test_ensemble_user_errors_change_nothing(weights, capsys):
    before = (weights / "tiny0.test" / "card.json").read_text()
    _fails_with(capsys, ["ensemble", "--weights", str(weights), "--id", "pair.test", "--name",
                         "Pair", "--members", "tiny0.test", "tiny7.test"],
                "Unknown model 'tiny7.test'", "Did you mean")
    _fails_with(capsys, ["ensemble", "--weights", str(weights), "--id", "tiny0.test", "--name",
                         "Pair", "--members", "tiny0.test", "tiny1.test"],
                "is an installed single model")
    _fails_with(capsys, ["ensemble", "--weights", str(weights), "--id", "nested.test", "--name",
                         "Nested", "--members", "tiny0.test", "ensemble.ham10000"],
                "members must be single models")
    assert (weights / "tiny0.test" / "card.json").read_text() == before
    assert not (weights / "pair.test").exists() and not (weights / "nested.test").exists()


@pytest.mark.parametrize("setup, message", [
    (None, "no state.json"),
    ({"state.json": "{not json"}, "state.json is not a training state"),
    ({"state.json": json.dumps({"config": {"architecture": "small_cnn"}})}, "config lacks"),
    ({"state.json": json.dumps({"config": {
        "architecture": "resnet9000", "image_size": 32, "imagenet": False, "head_epochs": 1,
        "fine_tune_epochs": 1, "batch_size": 8}})}, "Unknown architecture 'resnet9000'"),
])
def test_package_with_a_bad_run_folder(setup, message, weights, tmp_path, capsys):
    run_dir = tmp_path / "run"
    if setup is not None:
        run_dir.mkdir()
        (run_dir / "best.keras").write_bytes(b"placeholder: refused before it is read")
        for name, text in setup.items():
            (run_dir / name).write_text(text)
    _fails_with(capsys, ["package", "--run-dir", str(run_dir), "--id", "new.test", "--name",
                         "New", "--weights", str(weights)], message)
    assert not (weights / "new.test").exists()


def test_evaluate_user_errors(weights, tmp_path, monkeypatch, capsys):
    before = (weights / "tiny0.test" / "card.json").read_text()
    _fails_with(capsys, ["evaluate", "--weights", str(weights), "--model", "tiny0.tst",
                         "--report-dir", str(tmp_path)], "Unknown model 'tiny0.tst'")
    monkeypatch.setenv("LESIONLIB_DATA", str(tmp_path / "no_data"))
    _fails_with(capsys, ["evaluate", "--weights", str(weights), "--model", "tiny0.test",
                         "--report-dir", str(tmp_path)], "No ham10000 dataset folder found")
    _fails_with(capsys, ["evaluate", "--weights", str(tmp_path / "empty"),
                         "--report-dir", str(tmp_path)], "No models in the weights folder")
    assert (weights / "tiny0.test" / "card.json").read_text() == before
    assert not (tmp_path / "evaluation.json").exists()


def test_port_lite_without_torch(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "torch" else real(name, *args))
    _fails_with(capsys, ["port-lite", "--variant", "lite0"], "needs torch",
                "requirements-port.txt")


@pytest.mark.parametrize("images, message", [
    ("missing", "not found; expected a folder of images or a CSV"),
    ("no_file_column", "has no 'file' column; columns are ['path']"),
    ("empty_csv", "the CSV is empty"),
    ("binary_csv", "not a readable UTF-8 CSV"),
    ("image", "expected a folder of images or a CSV (.csv)"),
])
def test_predict_bad_image_list(images, message, weights, tmp_path, capsys):
    path = {"missing": tmp_path / "missing", "image": SAMPLE_DIR / "ISIC_0024904.jpg"}.get(
        images, tmp_path / f"{images}.csv")
    if images == "no_file_column":
        pd.DataFrame({"path": ["a.jpg"]}).to_csv(path, index=False)
    elif images == "empty_csv":
        path.write_text("")
    elif images == "binary_csv":
        path.write_bytes(b"file\n\xff\xfe\x00\x81")
    _fails_with(capsys, ["predict", "--weights", str(weights), "--images", str(path), "--out",
                         str(tmp_path / "out.csv"), "--quiet"], message)
    assert not (tmp_path / "out.csv").exists()


def test_predict_with_no_models(tmp_path, capsys):
    _fails_with(capsys, ["predict", "--weights", str(tmp_path), "--images", str(SAMPLE_DIR),
                         "--out", str(tmp_path / "out.csv")], "No models in the weights folder")


@pytest.mark.parametrize("bug", [KeyError("card"), RuntimeError("bug"), FileNotFoundError()])
def test_a_bug_is_not_turned_into_a_user_error(bug, monkeypatch):
    def broken(args):
        raise bug

    monkeypatch.setattr(lesionlib.commands.training, "architectures", broken)
    with pytest.raises(type(bug)):
        main(["architectures"])


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--images", "x", "--out", "y.csv", "--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "expected a whole number >= 1, received '0'" in capsys.readouterr().err


def test_interrupt_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(lesionlib.commands.training, "architectures", interrupted)
    assert main(["architectures"]) == 130
    assert capsys.readouterr().err.strip() == "Interrupted."


def test_a_pasted_reproduce_command_never_overwrites_the_live_version(weights, capsys):
    """The Models page's "Reproduce" command of the ensemble, pasted in the checkout, used to
    delete its stored predictions and gate, reset its calibration and make the live version its
    own parent. Installing the version a folder already holds is refused, the folder untouched."""
    from lesionlib.cards import read_card, reproduce_steps

    folder = weights / "ensemble.ham10000"
    before = {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    live = read_card(folder)
    _fails_with(capsys, ["ensemble", "--weights", str(weights), "--id", "ensemble.ham10000",
                         "--name", "again", "--members", "tiny0.test", "tiny1.test",
                         "--version", live.version],
                "already holds", f"version {live.version}", "--version", "--weights")
    after = {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert after == before
    steps = [step for step, _ in reproduce_steps(live)]
    assert steps[-1] == "fit-gate"  # every step is listed, the gate's too


def test_packaging_the_live_version_again_is_refused(weights, tmp_path, capsys):
    import json as json_module

    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json_module.dumps({"config": {
        "architecture": "small_cnn", "image_size": 32, "imagenet": False, "head_epochs": 1,
        "fine_tune_epochs": 1, "batch_size": 8}}))
    (run / "best.keras").write_bytes(b"")
    _fails_with(capsys, ["package", "--weights", str(weights), "--run-dir", str(run), "--id",
                         "tiny0.test", "--name", "x", "--version", "1.0.0"], "already holds")
