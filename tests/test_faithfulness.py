"""Heatmap faithfulness metrics on synthetic maps and masks (lesionlib.faithfulness)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from lesionlib import faithfulness
from lesionlib.imaging import frame_square

SIZE = 40


def centred_square(size: int = SIZE, half: int = 8) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    middle = size // 2
    mask[middle - half:middle + half, middle - half:middle + half] = True
    return mask


# ----------------------------------------------------------------------------- energy share

def test_energy_share_inside_a_region():
    lesion = centred_square()
    assert faithfulness.energy_share(lesion.astype(float), lesion) == pytest.approx(1.0)
    assert faithfulness.energy_share((~lesion).astype(float), lesion) == pytest.approx(0.0)
    uniform = np.ones((SIZE, SIZE))
    assert faithfulness.energy_share(uniform, lesion) == pytest.approx(
        faithfulness.area_share(lesion))
    half_on = lesion * 1.0 + (~lesion) * (lesion.sum() / (~lesion).sum())
    assert faithfulness.energy_share(half_on, lesion) == pytest.approx(0.5)


def test_energy_share_ignores_negative_values_and_flags_an_empty_map():
    lesion = centred_square()
    signed = np.where(lesion, 1.0, -5.0)
    assert faithfulness.energy_share(signed, lesion) == pytest.approx(1.0)
    assert np.isnan(faithfulness.energy_share(np.zeros((SIZE, SIZE)), lesion))


def test_energy_share_refuses_a_mask_of_another_size():
    with pytest.raises(ValueError, match=r"differs from region shape \(20, 20\)"):
        faithfulness.energy_share(np.ones((SIZE, SIZE)), np.ones((20, 20), dtype=bool))


def test_frame_mask_follows_the_image_framing():
    """A 4:3 mask is squashed exactly like the image (full field resized to a square)."""
    height, width = 60, 80
    mask = np.zeros((height, width), dtype=bool)
    mask[:, :20] = True  # the left quarter of the field
    framed = faithfulness.frame_mask(mask, SIZE)
    assert framed.shape == (SIZE, SIZE)
    assert faithfulness.area_share(framed) == pytest.approx(0.25)
    image = np.repeat(mask[..., None].astype("uint8") * 255, 3, axis=2)
    assert np.array_equal(framed, frame_square(image, SIZE)[..., 0] >= 128)
    with pytest.raises(ValueError, match="2-D mask"):
        faithfulness.frame_mask(np.zeros((4, 4, 3)), SIZE)


# ----------------------------------------------------------------------------- border band

def test_border_band_area():
    band = faithfulness.border_band((100, 100), 0.1)
    assert faithfulness.area_share(band) == pytest.approx(1 - 0.8 ** 2)
    assert band[0].all() and band[:, -1].all() and not band[50, 50]
    with pytest.raises(ValueError, match=r"\(0, 0.5\); received 0.5"):
        faithfulness.border_band((10, 10), 0.5)


def test_edge_check_fires_on_a_map_at_the_edge_only():
    band = faithfulness.border_band((SIZE, SIZE))
    at_edge = faithfulness.edge_check(band.astype(float), threshold=0.6)
    assert at_edge.energy_share == pytest.approx(1.0)
    assert at_edge.fires
    assert "mostly at the image edge, not on the lesion" in at_edge.message
    assert "100%" in at_edge.message
    on_lesion = faithfulness.edge_check(centred_square().astype(float), threshold=0.6)
    assert on_lesion.energy_share == pytest.approx(0.0)
    assert not on_lesion.fires
    uniform = faithfulness.edge_check(np.ones((SIZE, SIZE)), threshold=0.6)
    assert uniform.energy_share == pytest.approx(uniform.area_share)
    assert not uniform.fires


def test_choose_edge_threshold_separates_off_lesion_maps():
    shares = np.array([0.1, 0.2, 0.25, 0.3, 0.7, 0.8, 0.9, np.nan])
    off_lesion = np.array([False, False, False, False, True, True, True, True])
    chosen = faithfulness.choose_edge_threshold(shares, off_lesion, minimum=0.36)
    assert chosen["threshold"] == pytest.approx(0.7)
    assert chosen["sensitivity"] == 1.0 and chosen["false_alarm_rate"] == 0.0
    assert chosen["n"] == 7  # the empty map (nan) is left out
    # never below the band's own area share, even if that would score better
    low = faithfulness.choose_edge_threshold(np.array([0.05, 0.3]), np.array([False, True]),
                                             minimum=0.36)
    assert low["threshold"] >= 0.36
    with pytest.raises(ValueError, match="both off- and on-lesion maps"):
        faithfulness.choose_edge_threshold(shares[:4], off_lesion[:4], minimum=0.36)


# ----------------------------------------------------------------------------- deletion

def lesion_image(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    lesion = centred_square(size)
    image = np.full((size, size, 3), 200, dtype=np.uint8)
    image[lesion] = (60, 30, 20)
    return image, lesion


def lesion_score(lesion: np.ndarray):
    """A "model" that is sure of class 0 while the dark lesion is intact."""
    def score(batch: np.ndarray) -> np.ndarray:
        dark = (batch[..., 0] < 100) & lesion
        probability = dark.reshape(len(batch), -1).sum(axis=1) / lesion.sum()
        return np.stack([probability, 1 - probability], axis=1)
    return score


def test_delete_top_replaces_the_top_pixels_with_the_mean_colour():
    image, lesion = lesion_image()
    heatmap = lesion.astype("float32")
    assert np.array_equal(faithfulness.delete_top(image, heatmap, 0.0), image)
    share = faithfulness.area_share(lesion)
    deleted = faithfulness.delete_top(image, heatmap, share)
    mean_colour = image.reshape(-1, 3).mean(axis=0).astype("uint8")
    assert (deleted[lesion] == mean_colour).all()
    assert np.array_equal(deleted[~lesion], image[~lesion])
    assert np.array_equal(image[lesion][0], (60, 30, 20))  # the input is untouched
    with pytest.raises(ValueError, match="received 1.5"):
        faithfulness.delete_top(image, heatmap, 1.5)


def test_deletion_curve_falls_faster_for_a_map_on_the_lesion_than_for_random_maps():
    image, lesion = lesion_image()
    images = np.stack([image] * 4)
    classes = np.zeros(4, dtype=int)
    score = lesion_score(lesion)
    on_lesion = np.stack([lesion.astype("float32")] * 4)
    off_lesion = np.stack([(~lesion).astype("float32")] * 4)
    random = faithfulness.random_maps(4, SIZE, seed=1)
    curves = {name: faithfulness.deletion_curves(score, images, maps, classes)
              for name, maps in (("on", on_lesion), ("off", off_lesion), ("random", random))}
    assert curves["on"].shape == (4, len(faithfulness.DELETION_FRACTIONS))
    # the lesion is 16% of the image: 10% deleted leaves 6/16 of it, 20% none
    assert np.allclose(curves["on"][:, :3], [1.0, 0.375, 0.0])
    assert np.allclose(curves["on"][:, 3:], 0.0)
    areas = {name: faithfulness.curve_area(curve).mean() for name, curve in curves.items()}
    assert areas["on"] < areas["random"] < areas["off"]
    with pytest.raises(ValueError, match="do not match"):
        faithfulness.deletion_curves(score, images, on_lesion[:, :10], classes)


def test_random_maps_are_seeded_smooth_and_in_range():
    first = faithfulness.random_maps(3, SIZE, seed=0)
    assert first.shape == (3, SIZE, SIZE)
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert np.array_equal(first, faithfulness.random_maps(3, SIZE, seed=0))
    assert not np.array_equal(first, faithfulness.random_maps(3, SIZE, seed=1))
    neighbour_step = np.abs(np.diff(first, axis=2)).mean()
    assert neighbour_step < 0.05  # smooth like an upsampled CAM, not pixel noise


def test_curve_area():
    fractions = faithfulness.DELETION_FRACTIONS
    assert faithfulness.curve_area(np.ones(len(fractions))) == pytest.approx([1.0])
    assert faithfulness.curve_area(1 - np.asarray(fractions)) == pytest.approx([0.5])


# ----------------------------------------------------------------------------- report

def synthetic_report(threshold: float = 0.5, model_id: str = "tiny0.test", version: str = "1",
                     weights: dict | None = None) -> dict:
    """A report in the shape ``scripts/benchmarks/heatmap_faithfulness.py`` writes (figures invented)."""
    fractions = list(faithfulness.DELETION_FRACTIONS)
    summary = faithfulness.summarise({
        "mask_area": [0.2, 0.3, 0.25], "mask_energy": [0.1, 0.2, 0.6],
        "border_energy": [0.7, 0.6, 0.1],
        "deletion": [[0.9 - 0.08 * step for step in range(11)]] * 3,
        "random_deletion": [[0.9 - 0.04 * step for step in range(11)]] * 3}, threshold=threshold)
    summary["edge_check_on_check_half"] = faithfulness.edge_check_rates(
        np.array([0.7, 0.1]), np.array([True, False]), threshold)
    return {
        "command": "python scripts/benchmarks/heatmap_faithfulness.py",
        "data": {"set": "ph2", "images": 3, "image_ids": ["IMD1", "IMD2", "IMD3"],
                 "ham_val_images": 0, "samples": 1},
        "settings": {"explained_class": "each model's top class", "border_fraction": 0.1,
                     "deletion_fractions": fractions, "deletion_fill": "the mean colour",
                     "random_baseline": "noise", "off_lesion": "energy below area"},
        "edge_check": {"threshold": threshold, "border_fraction": 0.1, "chosen_on": "PH2 half",
                       "on_choose_half": {}, "on_check_half": summary[
                           "edge_check_on_check_half"]},
        "models": {model_id: {
            "name": "Tiny", "version": version, "kind": "single",
            "weights": weights or {model_id: "abc"}, "heatmap_size": 32,
            "methods": {"Grad-CAM": summary}, "ham_val_grad_cam": None,
            "samples_grad_cam": {"ISIC_0026857": {"border_energy": 0.7, "class": "nv",
                                                  "fires": 0.7 >= threshold}},
            "ph2_images": {"class": ["nv"] * 3, "mask_area": [0.2, 0.3, 0.25],
                           "methods": {"Grad-CAM": {"mask_energy": [0.1, 0.2, 0.6],
                                                    "border_energy": [0.7, 0.6, 0.1]}}},
            "seconds": 1.0}}}


def test_summarise_compares_energy_with_area_and_map_with_random():
    summary = synthetic_report()["models"]["tiny0.test"]["methods"]["Grad-CAM"]
    assert summary["mask_energy_mean"] == pytest.approx(0.3)
    assert summary["mask_area_mean"] == pytest.approx(0.25)
    assert summary["off_lesion_share"] == pytest.approx(2 / 3)
    assert summary["edge_check_fires"] == pytest.approx(2 / 3)
    assert summary["deletion"]["heatmap_auc"] < summary["deletion"]["random_auc"]
    assert summary["deletion"]["heatmap_faster_share"] == 1.0
    entry = synthetic_report()["models"]["tiny0.test"]
    assert faithfulness.looks_off_lesion(entry)
    rows = faithfulness.method_rows(entry)
    assert rows[0]["method"] == "Grad-CAM" and rows[0]["lesion area"] == pytest.approx(0.25)
    assert len(faithfulness.deletion_rows(entry)) == 2 * len(faithfulness.DELETION_FRACTIONS)


@dataclasses.dataclass
class Card:
    id: str = "tiny0.test"
    version: str = "1"
    kind: str = "single"
    weights_sha256: str = "abc"
    members: tuple = ()


def test_model_entry_says_when_the_figures_are_missing_or_stale(tmp_path):
    report = synthetic_report()
    entry, note = faithfulness.model_entry(report, Card(), {})
    assert entry is not None and note == ""
    entry, note = faithfulness.model_entry(report, Card(weights_sha256="new"), {})
    assert entry is not None and "not on the weights installed now" in note
    assert faithfulness.model_entry(report, Card(id="other"), {})[1].startswith(
        "The heatmap report does not cover `other`")
    assert "No heatmap report yet" in faithfulness.model_entry(None, Card(), {})[1]
    ensemble = Card(id="ens", kind="ensemble", weights_sha256=None, members=("tiny0.test",))
    assert faithfulness.weights_identity(ensemble, {"tiny0.test": Card()}) == {
        "tiny0.test": "abc"}


def test_load_report_round_trip_and_unreadable_file(tmp_path):
    path = tmp_path / "report.json"
    assert faithfulness.load_report(path) is None
    path.write_text(json.dumps(synthetic_report(threshold=0.42)))
    assert faithfulness.edge_threshold(faithfulness.load_report(path)) == pytest.approx(0.42)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable heatmap report"):
        faithfulness.load_report(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match="no 'models' or 'edge_check'"):
        faithfulness.load_report(path)


def test_report_markdown_has_every_table():
    text = faithfulness.report_markdown(synthetic_report())
    for heading in ("## Per model and method (PH2)", "## Deletion curves",
                    "## The edge check shown in Case review"):
        assert heading in text
    assert "| `tiny0.test` v1 | Grad-CAM | 30.0% | 25.0% |" in text
    assert "70.0% — fires" in text  # ISIC_0026857's edge energy, over the threshold


# ----------------------------------------------------------------------------- the report command

def load_script():
    import importlib.util

    path = faithfulness.REPO_ROOT / "scripts" / "benchmarks" / "heatmap_faithfulness.py"
    spec = importlib.util.spec_from_file_location("heatmap_faithfulness_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_ph2(folder, count: int = 6):
    """A PH2-like folder: 4:3 images with a dark lesion, its mask, and labels.csv."""
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rows = []
    generator = np.random.default_rng(0)
    for index in range(count):
        image = generator.integers(150, 220, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), dtype=np.uint8)
        top, left = 8 + 2 * index, 10 + 3 * index
        mask[top:top + 20, left:left + 24] = 255
        image[mask > 0] = (70, 40, 30)
        image_id = f"IMD{index:03d}"
        Image.fromarray(image).save(folder / "images" / f"{image_id}.jpg")
        Image.fromarray(mask).save(folder / "masks" / f"{image_id}_lesion.png")
        rows.append(f"{image_id},images/{image_id}.jpg,masks/{image_id}_lesion.png")
    (folder / "labels.csv").write_text("image_id,file,mask\n" + "\n".join(rows) + "\n")
    return folder


@pytest.mark.slow
def test_report_command_on_tiny_models(tiny_weights_dir, tmp_path, monkeypatch):
    from lesionlib import data

    script = load_script()
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    out = tmp_path / "report"
    arguments = ["--ph2", str(fake_ph2(tmp_path / "ph2")), "--weights", str(tiny_weights_dir),
                 "--ham-val", "0", "--methods", "Grad-CAM", "Grad-CAM++",
                 "--deletion-count", "2", "--out", str(out)]
    assert script.main(arguments) == 0
    report = faithfulness.load_report(out.with_suffix(".json"))
    assert set(report["models"]) == {"ensemble.ham10000", "tiny0.test", "tiny1.test"}
    for entry in report["models"].values():
        assert entry["heatmap_size"] == (224 if entry["kind"] == "ensemble" else 32)
        grad_cam = entry["methods"]["Grad-CAM"]
        assert 0.0 <= grad_cam["mask_energy_mean"] <= 1.0
        assert 0.0 < grad_cam["mask_area_mean"] < 1.0
        deletion = grad_cam["deletion"]
        assert deletion["n"] == 2 and len(deletion["heatmap_curve"]) == 11
        assert deletion["heatmap_curve"][0] == pytest.approx(deletion["random_curve"][0])
        assert "deletion" not in entry["methods"]["Grad-CAM++"]
        assert len(entry["samples_grad_cam"]) == 21
    text = out.with_suffix(".md").read_text()
    assert "## Per model and method (PH2)" in text
    # a second run reuses every model's figures (nothing changed)
    assert script.main(arguments) == 0
    assert len(list((tmp_path / "cache" / "heatmap_faithfulness").iterdir())) == 3


def test_deletion_not_faster_names_the_methods_no_better_than_random():
    entry = {"methods": {
        "Grad-CAM": {"deletion": {"heatmap_auc": 0.55, "random_auc": 0.45}},
        "Grad-CAM++": {"deletion": {"heatmap_auc": 0.30, "random_auc": 0.45}},
        "Faster-Score-CAM": {"deletion": None},
        "other": {}}}
    assert faithfulness.deletion_not_faster(entry) == ["Grad-CAM"]
    assert faithfulness.deletion_not_faster({"methods": {}}) == []
