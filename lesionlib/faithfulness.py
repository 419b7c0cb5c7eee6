"""Is a heatmap on the lesion? Energy in a lesion mask, deletion curves and the edge check.

Three measures, all on a heatmap over the model's framed square input (``imaging.frame_square``:
the full field of view resized to a square), so a lesion mask is mapped through the same framing
(``frame_mask``) before any comparison:

- **Energy share**: the share of a heatmap's summed values inside a region. Inside the lesion
  mask it is compared with the mask's share of the image: a map that ignores the lesion scores
  about the mask's area share, a map on the lesion scores more.
- **Deletion curve** (Petsiuk et al., "RISE", BMVC 2018, arXiv:1806.07421): the model's
  confidence in the explained class as the top-ranked pixels of the map are replaced by the
  image's mean colour, in ``DELETION_FRACTIONS``. A faithful map makes the confidence fall
  faster than a random map of the same smoothness (``random_maps``) does.
- **Edge check** (``edge_check``): without a mask, the share of heatmap energy in the outer band
  of the image (``BORDER_FRACTION`` of each side) against the band's share of the area. It fires
  above a threshold chosen on PH2 figures by ``scripts/benchmarks/heatmap_faithfulness.py`` and stored in
  ``reports/heatmap_faithfulness.json`` with the model-level figures.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
REPORT_PATH = REPO_ROOT / "reports" / "heatmap_faithfulness.json"
REPORT_ENV = "LESIONLIB_HEATMAP_REPORT"  # another report file (tests, deployments)
REPORT_COMMAND = "python scripts/benchmarks/heatmap_faithfulness.py"
BORDER_FRACTION = 0.1  # the edge band: this share of the side, on each of the four sides
DELETION_FRACTIONS = tuple(round(step / 10, 1) for step in range(11))  # 0, 0.1, ..., 1.0
RANDOM_GRID = 7  # random baseline maps: uniform noise on a 7x7 grid, upsampled like a CAM


# ----------------------------------------------------------------------------- regions

def frame_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A lesion mask through the model's framing: the full field resized to ``size x size``
    (area interpolation, as ``imaging.frame_square``), kept where at least half covered."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"Expected a 2-D mask (height, width); received shape {mask.shape}.")
    resized = cv2.resize((mask > 0).astype("float32"), (size, size),
                         interpolation=cv2.INTER_AREA)
    return resized >= 0.5


def border_band(shape: tuple[int, int], fraction: float = BORDER_FRACTION) -> np.ndarray:
    """``True`` on the outer band of an image of ``shape``: ``fraction`` of each side."""
    if not 0.0 < fraction < 0.5:
        raise ValueError(f"The border fraction must be in (0, 0.5); received {fraction}.")
    height, width = shape
    rows, columns = max(1, round(fraction * height)), max(1, round(fraction * width))
    band = np.ones((height, width), dtype=bool)
    band[rows:height - rows, columns:width - columns] = False
    return band


def area_share(region: np.ndarray) -> float:
    """The share of the image a boolean region covers."""
    return float(np.asarray(region, dtype=bool).mean())


def energy_share(heatmap: np.ndarray, region: np.ndarray) -> float:
    """The share of a heatmap's summed (non-negative) values inside ``region``.

    Returns ``nan`` for an all-zero map, which points nowhere.

    Raises:
        ValueError: the map and the region differ in shape.
    """
    heatmap = np.clip(np.asarray(heatmap, dtype="float64"), 0.0, None)
    region = np.asarray(region, dtype=bool)
    if heatmap.shape != region.shape:
        raise ValueError(f"Heatmap shape {heatmap.shape} differs from region shape "
                         f"{region.shape}; frame the mask to the heatmap's size first.")
    total = heatmap.sum()
    return float(heatmap[region].sum() / total) if total > 0 else float("nan")


# ----------------------------------------------------------------------------- deletion

def random_maps(count: int, size: int, grid: int = RANDOM_GRID, seed: int = 0) -> np.ndarray:
    """``count`` random ``(size, size)`` maps in [0, 1], as smooth as a CAM from a
    ``grid x grid`` feature map (the baseline of the deletion curve; seeded)."""
    generator = np.random.default_rng(seed)
    coarse = generator.random((count, grid, grid)).astype("float32")
    return np.stack([cv2.resize(map_, (size, size), interpolation=cv2.INTER_LINEAR)
                     for map_ in coarse])


def delete_top(image: np.ndarray, heatmap: np.ndarray, fraction: float) -> np.ndarray:
    """``image`` with the ``fraction`` of pixels ranked highest by ``heatmap`` set to the
    image's mean colour (ties broken by position, so the result is deterministic)."""
    if image.shape[:2] != heatmap.shape:
        raise ValueError(f"Image {image.shape[:2]} and heatmap {heatmap.shape} differ in size.")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"The deleted fraction must be in [0, 1]; received {fraction}.")
    count = int(round(fraction * heatmap.size))
    result = image.copy()
    if count:
        order = np.argsort(-heatmap.ravel(), kind="stable")[:count]
        mean_colour = image.reshape(-1, image.shape[-1]).mean(axis=0)
        result.reshape(-1, image.shape[-1])[order] = mean_colour.astype(image.dtype)
    return result


def deletion_curves(score: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                    heatmaps: np.ndarray, class_indices: np.ndarray,
                    fractions: tuple[float, ...] = DELETION_FRACTIONS) -> np.ndarray:
    """``(n, len(fractions))``: the probability of each image's class as its top-ranked pixels
    are deleted.

    Args:
        score: framed images ``(k, size, size, 3)`` -> probabilities ``(k, classes)``.
        images: framed images at the heatmaps' size, ``(n, size, size, 3)``.
        heatmaps: ``(n, size, size)``.
        class_indices: the class whose probability is followed, per image.
    """
    images, heatmaps = np.asarray(images), np.asarray(heatmaps)
    if images.shape[:3] != heatmaps.shape:
        raise ValueError(f"Images {images.shape} and heatmaps {heatmaps.shape} do not match; "
                         "expected (n, size, size, 3) and (n, size, size).")
    rows = np.arange(len(images))
    curves = []
    for fraction in fractions:
        deleted = np.stack([delete_top(image, heatmap, fraction)
                            for image, heatmap in zip(images, heatmaps)])
        curves.append(np.asarray(score(deleted))[rows, class_indices])
    return np.stack(curves, axis=1)


def curve_area(curves: np.ndarray, fractions: tuple[float, ...] = DELETION_FRACTIONS
               ) -> np.ndarray:
    """Area under each deletion curve over the deleted fraction (lower: faster drop)."""
    curves = np.atleast_2d(curves)
    steps = np.diff(np.asarray(fractions, dtype="float64"))
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * steps).sum(axis=1)


# ----------------------------------------------------------------------------- edge check

@dataclasses.dataclass(frozen=True)
class EdgeCheck:
    """The share of a heatmap's energy in the image's outer band, against a threshold."""

    energy_share: float
    area_share: float
    threshold: float

    @property
    def fires(self) -> bool:
        return bool(self.energy_share >= self.threshold)

    @property
    def message(self) -> str:
        return (f"the heatmap lies mostly at the image edge, not on the lesion: "
                f"{100 * self.energy_share:.0f}% of its weight is in the outer band of the "
                f"image, which covers {100 * self.area_share:.0f}% of its area (the warning "
                f"fires from {100 * self.threshold:.0f}%). The model may be reacting to the "
                "image's border — vignette, ruler, ink or gel — rather than to the lesion; "
                "do not read this map as where the lesion's features are.")


def edge_check(heatmap: np.ndarray, threshold: float,
               fraction: float = BORDER_FRACTION) -> EdgeCheck:
    """The edge check of one heatmap (no mask needed)."""
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 2:
        raise ValueError(f"Expected a 2-D heatmap; received shape {heatmap.shape}.")
    band = border_band(heatmap.shape, fraction)
    return EdgeCheck(energy_share(heatmap, band), area_share(band), float(threshold))


def choose_edge_threshold(border_shares: np.ndarray, off_lesion: np.ndarray,
                          minimum: float) -> dict:
    """The border-energy threshold that best separates off-lesion maps (Youden's J).

    Candidates are the observed shares at or above ``minimum`` (at least the band's area share,
    so the warning never fires on a map no more at the edge than a uniform one).

    Returns:
        ``threshold``, ``sensitivity`` (off-lesion maps flagged), ``false_alarm_rate``
        (on-lesion maps flagged) and ``flagged_share`` on the data it was chosen on.
    """
    border_shares = np.asarray(border_shares, dtype="float64")
    off_lesion = np.asarray(off_lesion, dtype=bool)
    valid = ~np.isnan(border_shares)
    border_shares, off_lesion = border_shares[valid], off_lesion[valid]
    if not off_lesion.any() or off_lesion.all():
        raise ValueError(f"Choosing a threshold needs both off- and on-lesion maps; received "
                         f"{int(off_lesion.sum())} off-lesion of {len(off_lesion)}.")
    candidates = np.unique(border_shares[border_shares >= minimum])
    if candidates.size == 0:
        candidates = np.array([minimum])
    best = max(candidates, key=lambda threshold: _youden(border_shares, off_lesion, threshold))
    return {"threshold": float(best), **edge_check_rates(border_shares, off_lesion, best)}


def _youden(shares: np.ndarray, off_lesion: np.ndarray, threshold: float) -> float:
    rates = edge_check_rates(shares, off_lesion, threshold)
    return rates["sensitivity"] - rates["false_alarm_rate"]


def edge_check_rates(border_shares: np.ndarray, off_lesion: np.ndarray,
                     threshold: float) -> dict:
    """How the edge check at ``threshold`` does against a mask-based verdict."""
    border_shares = np.asarray(border_shares, dtype="float64")
    off_lesion = np.asarray(off_lesion, dtype=bool)
    flagged = border_shares >= threshold
    return {"sensitivity": _rate(flagged[off_lesion]),
            "false_alarm_rate": _rate(flagged[~off_lesion]),
            "precision": _rate(off_lesion[flagged]),
            "flagged_share": _rate(flagged), "off_lesion_share": _rate(off_lesion),
            "n": int(len(flagged))}


def _rate(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


# ----------------------------------------------------------------------------- the report

def load_report(path: str | Path | None = None) -> dict | None:
    """The stored report (``$LESIONLIB_HEATMAP_REPORT``, else
    ``reports/heatmap_faithfulness.json``), ``None`` if absent.

    Raises:
        ValueError: the file exists but is not a readable report.
    """
    path = Path(path or os.environ.get(REPORT_ENV) or REPORT_PATH)
    if not path.is_file():
        return None
    stat = path.stat()
    return _read_report(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _read_report(path_text: str, mtime_ns: int, size: int) -> dict:
    """The parsed report, read again only when the file changed (shown beside every heatmap;
    the caller must not modify it)."""
    path = Path(path_text)
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name} is not a readable heatmap report ({error}); rerun "
                         f"`{REPORT_COMMAND}`.") from None
    if not isinstance(report, dict) or "models" not in report or "edge_check" not in report:
        raise ValueError(f"{path.name} has no 'models' or 'edge_check' entry; rerun "
                         f"`{REPORT_COMMAND}`.")
    return report


def weights_identity(card, cards: dict) -> dict[str, str]:
    """``{single model id: weights sha256}`` of a model (an ensemble: of its members)."""
    if card.kind == "ensemble":
        return {member: getattr(cards.get(member), "weights_sha256", None) or ""
                for member in card.members}
    return {card.id: card.weights_sha256 or ""}


def model_entry(report: dict | None, card, cards: dict) -> tuple[dict | None, str]:
    """A model's figures from the report and a note: ``""`` when they are current, else why
    they are missing or stale (the model changed since the report was written)."""
    if report is None:
        return None, f"No heatmap report yet: run `{REPORT_COMMAND}`."
    entry = report["models"].get(card.id)
    if entry is None:
        return None, (f"The heatmap report does not cover `{card.id}`; rerun "
                      f"`{REPORT_COMMAND}`.")
    if entry.get("version") != card.version or entry.get("weights") != weights_identity(
            card, cards):
        return entry, (f"These figures were measured on version {entry.get('version')} of "
                       f"`{card.id}`, not on the weights installed now (version "
                       f"{card.version}); rerun `{REPORT_COMMAND}`.")
    return entry, ""


def edge_threshold(report: dict | None) -> float | None:
    """The edge-check threshold stored in the report, ``None`` without a report."""
    threshold = report["edge_check"].get("threshold") if report is not None else None
    return None if threshold is None else float(threshold)


# ----------------------------------------------------------------------------- measuring a model

ENSEMBLE_MAP_SIZE = 224  # explain.ensemble_map's default


def heatmap_size_of_card(card) -> int:
    """The side of a model's heatmaps: its input size, or 224 for an ensemble's mean map."""
    return ENSEMBLE_MAP_SIZE if card.kind == "ensemble" else card.input_size


def heatmap_size(classifier) -> int:
    """``heatmap_size_of_card`` of a loaded model (single, ensemble or edge)."""
    if len(classifier.members) > 1:
        return ENSEMBLE_MAP_SIZE
    return classifier.members[0].card.input_size


def model_maps(classifier, explainers: list, images: list[np.ndarray],
               class_indices: list[int], method: str) -> np.ndarray:
    """The heatmaps the dashboard shows for these images and classes: ``(n, size, size)``."""
    from lesionlib import explain

    if len(explainers) == 1:
        return explainers[0].compute_maps(images, class_indices, method)
    return explain.ensemble_maps(explainers, images, class_indices, method,
                                 heatmap_size(classifier))


def measure_model(classifier, explainers: list, images: list[np.ndarray],
                  masks: list[np.ndarray] | None, methods: tuple[str, ...],
                  deletion_methods: tuple[str, ...] = ("Grad-CAM",),
                  fractions: tuple[float, ...] = DELETION_FRACTIONS, seed: int = 0,
                  deletion_rows: list[int] | None = None,
                  log: Callable[[str], None] = print) -> dict:
    """Per-image figures of each method's heatmaps for the model's top class on each image.

    Returns:
        ``{"class_indices", "confidence", "mask_area"`` (with masks), "methods": {method:
        {"mask_energy", "border_energy", and for ``deletion_methods`` "deletion",
        "random_deletion"}}, "deletion_rows"}``: lists, one value (or curve) per image; the
        deletion curves only for the images ``deletion_rows`` (default: all) lists.
    """
    size = heatmap_size(classifier)
    probabilities = classifier.predict_proba(images)
    class_indices = probabilities.argmax(axis=1)
    result = {"class_indices": class_indices.tolist(),
              "confidence": probabilities.max(axis=1).tolist(), "methods": {}}
    framed_masks = [frame_mask(mask, size) for mask in masks] if masks is not None else None
    if framed_masks is not None:
        result["mask_area"] = [area_share(mask) for mask in framed_masks]
    band = border_band((size, size))
    framed = None
    for method in methods:
        log(f"  {method}: heatmaps of {len(images)} images ...")
        maps = model_maps(classifier, explainers, images, list(class_indices), method)
        figures = {"border_energy": [energy_share(heatmap, band) for heatmap in maps]}
        if framed_masks is not None:
            figures["mask_energy"] = [energy_share(heatmap, mask)
                                      for heatmap, mask in zip(maps, framed_masks)]
        if method in deletion_methods:
            from lesionlib.imaging import frame_square

            rows = list(range(len(images))) if deletion_rows is None else list(deletion_rows)
            result["deletion_rows"] = rows
            log(f"  {method}: deletion curves of {len(rows)} images, {len(fractions)} steps, "
                "map and random ...")
            framed = framed if framed is not None else np.stack(
                [frame_square(images[row], size) for row in rows])

            def score(batch: np.ndarray) -> np.ndarray:
                return classifier.predict_proba(list(batch))

            figures["deletion"] = deletion_curves(score, framed, maps[rows],
                                                  class_indices[rows], fractions).tolist()
            # Nothing or everything deleted does not depend on the map: reuse those two steps.
            baseline = random_maps(len(images), size, seed=seed)[rows]
            inner = deletion_curves(score, framed, baseline, class_indices[rows], fractions[1:-1])
            ends = np.asarray(figures["deletion"])
            figures["random_deletion"] = np.hstack([ends[:, :1], inner, ends[:, -1:]]).tolist()
        result["methods"][method] = figures
    return result


class RememberingExplainer:
    """An explainer that keeps every map it computed, by (image object, class, method): a
    report explains the same images for each single model and again inside the ensemble."""

    def __init__(self, explainer):
        self.explainer = explainer
        self.model = explainer.model
        self._maps: dict[tuple, np.ndarray] = {}

    def compute_maps(self, images: list[np.ndarray], class_indices: list[int],
                     method: str = "Grad-CAM", batch_size: int = 16) -> np.ndarray:
        keys = [(id(image), int(index), method) for image, index in zip(images, class_indices)]
        missing = [row for row, key in enumerate(keys) if key not in self._maps]
        if missing:
            maps = self.explainer.compute_maps([images[row] for row in missing],
                                               [class_indices[row] for row in missing], method,
                                               batch_size)
            self._maps.update({keys[row]: heatmap for row, heatmap in zip(missing, maps)})
        return np.stack([self._maps[key] for key in keys])


def summarise(figures: dict, fractions: tuple[float, ...] = DELETION_FRACTIONS,
              threshold: float | None = None) -> dict:
    """Model-level figures of one method from ``measure_model``'s per-image lists."""
    border = np.asarray(figures["border_energy"], dtype="float64")
    summary = {"n": int(len(border)), "border_energy_mean": _mean(border),
               "border_area": area_share(border_band((100, 100)))}
    if threshold is not None:
        summary["edge_check_fires"] = _rate(border[~np.isnan(border)] >= threshold)
    if "mask_energy" in figures:
        energy = np.asarray(figures["mask_energy"], dtype="float64")
        area = np.asarray(figures["mask_area"], dtype="float64")
        summary.update({"mask_area_mean": _mean(area), "mask_energy_mean": _mean(energy),
                        "energy_to_area_median": float(np.nanmedian(energy / area)),
                        "off_lesion_share": _rate(energy[~np.isnan(energy)]
                                                  < area[~np.isnan(energy)])})
    if "deletion" in figures:
        curves = np.asarray(figures["deletion"])
        random_curves = np.asarray(figures["random_deletion"])
        heatmap_area, random_area = curve_area(curves, fractions), curve_area(random_curves,
                                                                             fractions)
        summary["deletion"] = {
            "n": int(len(curves)), "fractions": list(fractions),
            "heatmap_curve": curves.mean(axis=0).tolist(),
            "random_curve": random_curves.mean(axis=0).tolist(),
            "heatmap_auc": float(heatmap_area.mean()), "random_auc": float(random_area.mean()),
            "heatmap_faster_share": float(np.mean(heatmap_area < random_area))}
    return summary


def _mean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


# ----------------------------------------------------------------------------- tables

def method_rows(entry: dict) -> list[dict]:
    """One row per heatmap method of a model's report entry, for a table."""
    rows = []
    for method, summary in entry["methods"].items():
        deletion = summary.get("deletion") or {}
        rows.append({
            "method": method,
            "energy in lesion": summary.get("mask_energy_mean"),
            "lesion area": summary.get("mask_area_mean"),
            "energy / area (median)": summary.get("energy_to_area_median"),
            "maps off the lesion": summary.get("off_lesion_share"),
            "energy in edge band": summary.get("border_energy_mean"),
            "edge warning fires": summary.get("edge_check_fires"),
            "deletion AUC (map)": deletion.get("heatmap_auc"),
            "deletion AUC (random)": deletion.get("random_auc")})
    return rows


def deletion_rows(entry: dict) -> list[dict]:
    """Long-form mean deletion curves (map and random baseline) of a model, for a chart."""
    rows = []
    for method, summary in entry["methods"].items():
        deletion = summary.get("deletion")
        if not deletion:
            continue
        for curve, label in (("heatmap_curve", f"{method} map"),
                             ("random_curve", "random map (baseline)")):
            rows += [{"deleted fraction": fraction, "confidence": value, "order": label}
                     for fraction, value in zip(deletion["fractions"], deletion[curve])]
    return rows


def looks_off_lesion(entry: dict, method: str = "Grad-CAM") -> bool:
    """Whether most of a model's PH2 maps (of ``method``) put less energy on the lesion than
    a uniform map would (the model mostly looks off the lesion)."""
    summary = entry["methods"].get(method, {})
    return summary.get("off_lesion_share", 0.0) > 0.5


def deletion_not_faster(entry: dict) -> list[str]:
    """The methods whose deletion curve does not fall faster than the random maps' (map AUC at
    or above the random AUC): their top-ranked pixels are not shown to matter more than any."""
    return [method for method, summary in entry["methods"].items()
            if (summary.get("deletion") or {}).get("heatmap_auc") is not None
            and summary["deletion"]["heatmap_auc"] >= summary["deletion"]["random_auc"]]


DELETION_CAVEAT = (
    "Removing the pixels this heatmap ranks highest does not lower the model's confidence "
    "faster than removing random patches of the same smoothness (PH2 deletion test). Read the "
    "heatmap as where the model's attention lies, not as proof of what decides its answer.")


def format_value(value, percent: bool = True) -> str:
    """A share as a percentage (or a plain number to 3 decimals); "—" when missing."""
    if value is None or value != value:
        return "—"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def report_markdown(report: dict) -> str:
    """``reports/heatmap_faithfulness.md`` from the JSON report."""
    settings, check = report["settings"], report["edge_check"]
    cell = format_value
    lines = [
        "# Heatmap faithfulness: is the model looking at the lesion?", "",
        f"Written by `{report['command'].strip()}` (rerun it after any model changes). "
        f"Data: {report['data']['images']} PH2 images with their lesion masks (external set, "
        f"research use only), {report['data']['ham_val_images']} HAM10000 lesion-grouped "
        f"validation images and the {report['data']['samples']} bundled samples. Each map "
        f"explains {settings['explained_class']}; masks are framed like the model's input "
        "(full field of view resized to a square).", "",
        "- **Energy in lesion**: share of the map's summed values inside the lesion mask; "
        "**lesion area**: the mask's share of the image (what a uniform map would score). "
        "**Maps off the lesion**: images whose map puts less energy on the lesion than its "
        "area share.",
        f"- **Edge band**: the outer {100 * settings['border_fraction']:.0f}% of each side "
        f"({cell(area_share(border_band((100, 100), settings['border_fraction'])))} of the "
        "area).",
        f"- **Deletion AUC** (on {report['data'].get('deletion_images', 'all')} of PH2): mean "
        "area under the curve of the calibrated probability of the "
        f"explained class as the top-ranked pixels are set to {settings['deletion_fill']} "
        f"(fractions {settings['deletion_fractions'][0]} to {settings['deletion_fractions'][-1]}"
        f"); lower is a faster drop. Baseline: {settings['random_baseline']}.", "",
        "## Per model and method (PH2)", "",
        "| model | method | energy in lesion | lesion area | energy/area (median) | maps off "
        "the lesion | energy in edge band | edge warning fires | deletion AUC: map / random |",
        "|---|---|---|---|---|---|---|---|---|"]
    for model_id, entry in report["models"].items():
        for row in method_rows(entry):
            lines.append(
                f"| `{model_id}` v{entry['version']} | {row['method']} | "
                f"{cell(row['energy in lesion'])} | {cell(row['lesion area'])} | "
                f"{cell(row['energy / area (median)'], False)} | "
                f"{cell(row['maps off the lesion'])} | {cell(row['energy in edge band'])} | "
                f"{cell(row['edge warning fires'])} | "
                f"{cell(row['deletion AUC (map)'], False)} / "
                f"{cell(row['deletion AUC (random)'], False)} |")
    lines += ["", "## Deletion curves (PH2, mean probability of the explained class)", "",
              "| model | order | " + " | ".join(f"{fraction:.0%}" for fraction in
                                                  settings["deletion_fractions"]) + " |",
              "|---|---|" + "---|" * len(settings["deletion_fractions"])]
    for model_id, entry in report["models"].items():
        for method, summary in entry["methods"].items():
            deletion = summary.get("deletion")
            if deletion:
                for curve, label in (("heatmap_curve", f"{method} map"),
                                     ("random_curve", "random map")):
                    lines.append(f"| `{model_id}` | {label} | " + " | ".join(
                        f"{value:.3f}" for value in deletion[curve]) + " |")
    slower = [(model_id, method) for model_id, entry in report["models"].items()
              for method in deletion_not_faster(entry)]
    faster = [(model_id, method) for model_id, entry in report["models"].items()
              for method, summary in entry["methods"].items()
              if (summary.get("deletion") or {}).get("heatmap_auc") is not None
              and (model_id, method) not in slower]
    if slower or faster:
        lines += ["", "Reading: a map that ranks first the pixels the prediction depends on "
                  "makes the curve fall faster than the random maps (lower AUC). "
                  + (f"Faster than random: {', '.join(f'`{m}` ({k})' for m, k in faster)}. "
                     if faster else "")
                  + (f"**Not faster than random: {', '.join(f'`{m}` ({k})' for m, k in slower)}"
                     "** — their maps sit on the lesion (energy above), but deleting the "
                     "top-ranked pixels first (mostly the lesion, filled with the mean colour) "
                     "hurts the prediction less than random patches spread over the whole "
                     "image; the dashboard says so beside these models' figures."
                     if slower else "")]
    held_out = check["on_check_half"]
    if check.get("threshold") is None:
        lines += ["", "## The edge check shown in Case review", "",
                  f"No threshold could be chosen: {check.get('on_choose_half', {})}", ""]
        return "\n".join(lines)
    lines += [
        "", "## The edge check shown in Case review", "",
        f"Fires when at least **{cell(check['threshold'])}** of a heatmap's energy lies in the "
        f"edge band. Threshold chosen on {check['chosen_on']} (there, "
        f"{cell(check['on_choose_half'].get('off_lesion_share'))} of "
        f"{check['on_choose_half'].get('n', 0)} maps were off the lesion"
        + ("; the threshold is at its 50% floor, not set by the data"
           if check["threshold"] <= 0.5 else "") + "). On the other half (the 'check' "
        f"half, {held_out['n']} maps): it flags {cell(held_out['sensitivity'])} of the maps "
        f"that are off the lesion by the mask and {cell(held_out['false_alarm_rate'])} of the "
        f"others; {cell(held_out['precision'])} of its warnings are off-lesion maps; it fires "
        f"on {cell(held_out['flagged_share'])} of maps "
        f"({cell(held_out['off_lesion_share'])} are off the lesion).", "",
        "| model | PH2 check half, Grad-CAM: flags off-lesion / false alarms | HAM10000 "
        "validation, Grad-CAM: fires | bundled samples: fires | "
        "ISIC_0026857 (edge energy) |", "|---|---|---|---|---|"]
    for model_id, entry in report["models"].items():
        rates = entry["methods"]["Grad-CAM"]["edge_check_on_check_half"]
        ham = entry.get("ham_val_grad_cam") or {}
        samples = entry["samples_grad_cam"]
        fired = sum(sample["fires"] for sample in samples.values())
        issue = samples.get("ISIC_0026857")
        lines.append(
            f"| `{model_id}` | {cell(rates['sensitivity'])} / "
            f"{cell(rates['false_alarm_rate'])} | {cell(ham.get('edge_check_fires'))} of "
            f"{ham.get('n', 0)} | {fired} of {len(samples)} | "
            + (f"{cell(issue['border_energy'])}{' — fires' if issue['fires'] else ''} |"
               if issue else "— |"))
    lines += ["", "Per-image figures are in the JSON (`models.<id>.ph2_images`, in the order of "
              "`data.image_ids`).", ""]
    return "\n".join(lines)
