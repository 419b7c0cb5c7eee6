"""Weight-space interpolation (WiSE-FT): the mix, its refusals, and the run folders it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lesionlib import weight_interpolation
from lesionlib.weight_interpolation import InterpolationError, mix


def _tiny(seed: int, units: int = 7):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inputs))
    return keras.Model(inputs, keras.layers.Dense(units, activation="softmax")(pooled))


def test_the_mix_is_the_weighted_mean_of_the_two_ends():
    start, end = _tiny(0), _tiny(1)
    first, second = start.get_weights(), end.get_weights()
    mixed = mix(start, end, 0.25).get_weights()
    for a, b, m in zip(first, second, mixed):
        np.testing.assert_allclose(m, 0.75 * a + 0.25 * b, rtol=1e-6)


def test_models_of_different_shape_or_a_wrong_alpha_are_refused():
    with pytest.raises(InterpolationError, match="weights differ"):
        mix(_tiny(0), _tiny(1, units=2), 0.5)
    with pytest.raises(InterpolationError, match="from 0 to 1; received 1.5"):
        mix(_tiny(0), _tiny(1), 1.5)


def test_interpolate_run_scores_every_alpha_and_writes_packageable_runs(tmp_path, monkeypatch):
    start_file, run_dir = tmp_path / "start.keras", tmp_path / "run"
    run_dir.mkdir()
    _tiny(0).save(start_file)
    _tiny(1).save(run_dir / "best.keras")
    (run_dir / "state.json").write_text(json.dumps({"config": {
        "architecture": "small_cnn", "image_size": 8, "imagenet": False, "head_epochs": 0,
        "fine_tune_epochs": 1, "batch_size": 4, "extra_validation_sets": ["bcn20000"]}}))
    rng = np.random.default_rng(0)
    sets = {name: (rng.integers(0, 256, (14, 8, 8, 3)).astype("uint8"), np.arange(14) % 7)
            for name in ("ham10000", "bcn20000")}
    monkeypatch.setattr(weight_interpolation, "validation_sets", lambda *args: sets)

    rows = weight_interpolation.interpolate_run(start_file, run_dir, [0.0, 0.5, 1.0],
                                                tmp_path / "mixes", tmp_path, "the command")

    assert [row["alpha"] for row in rows] == [0.0, 0.5, 1.0]
    # alpha 0 is the start model itself, scored in the same run
    start_scores = weight_interpolation.score(weight_interpolation.load_model(start_file), sets)
    assert rows[0]["scores"] == start_scores
    state = json.loads((tmp_path / "mixes" / "alpha-0.50" / "state.json").read_text())
    assert state["interpolation"]["alpha"] == 0.5
    assert state["config"]["image_size"] == 8 and state["best"]["phase"] == "interpolation"
    assert (tmp_path / "mixes" / "alpha-0.50" / "best.keras").is_file()
    table = (tmp_path / "mixes" / "interpolation.md").read_text()
    assert "| 0.50 |" in table and "bcn20000 val BA" in table
