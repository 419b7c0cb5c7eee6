"""Measure each model's quality gate and "review carefully" flags, and write the figures.

Image gate (the findings that withhold a diagnosis, ``quality.WITHHOLD_CODES``):
- detection rate on a set built here of images that are not usable dermoscopy: photographs from
  ``skimage.data`` (not dermoscopic), synthetic blanks and uniform noise, and HAM10000 *test*
  images degraded by heavy blur, under- and over-exposure, or turned grayscale;
- false-alarm rate on the untouched HAM10000 test split, and on ISIC 2017 (val + test) and PH2:
  dermoscopic images from other clinics, which must not be rejected wholesale.

"Review carefully" flags (entropy, ensemble disagreement), from each model's stored predictions
(``weights/<id>/predictions/``): share of cases flagged and the error-rate ratio flagged over
unflagged on validation (where the thresholds were chosen by ``fit-gate``), test, ISIC 2017 and
PH2 (held out), and the risk-coverage table of selective classification on each set.

Every gate threshold was fitted on training/validation data only (``fit-gate``). Results are
merged by model into reports/quality_gate.json (so one model can be re-measured alone);
reports/quality_gate.md and reports/quality_gate_risk_coverage.csv are rewritten from it.

Usage: python scripts/benchmarks/benchmark_quality_gate.py [--model ID ...] [--out reports]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lesionlib import data, evaluation, registry, selective  # noqa: E402
from lesionlib.classes import CLASS_NAMES  # noqa: E402
from lesionlib.quality import WITHHOLD_CODES, QualityChecker  # noqa: E402

SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins",
                  "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
                  "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina",
                  "rocket", "text")
GATE_SETS = {"ham10000_test": ("ham10000", "test"), "isic2017": ("isic2017", "val+test"),
             "ph2": ("ph2", "all"), "bcn20000_test": ("bcn20000", "test")}
FLAG_SETS = ("ham10000_val", "ham10000_test", "isic2017", "ph2")
BATCH = 64


def skimage_photographs() -> list[tuple[str, np.ndarray]]:
    from skimage import data as skimage_data

    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            image = np.asarray(getattr(skimage_data, name)())
        except Exception as error:  # noqa: BLE001 - a data file may need a download
            print(f"  skipping skimage.data.{name}: {error}", file=sys.stderr)
            continue
        if image.dtype != np.uint8:
            image = (255 * (image.astype("float64") / max(image.max(), 1))).astype("uint8")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        photos.append((f"photo:{name}", image[..., :3]))
    return photos


def degraded_set(test_images: list[np.ndarray], rng: np.random.Generator, count: int):
    """Blurred, darkened, over-exposed and grayscale test images; blanks; uniform noise."""
    chosen = rng.choice(len(test_images), size=count + 10, replace=False)
    images = []
    for index in chosen[: count // 3]:
        images.append(("blur", cv2.GaussianBlur(test_images[index], (0, 0), 6)))
    for index in chosen[count // 3: 2 * count // 3]:
        images.append(("dark", (test_images[index] * 0.2).astype("uint8")))
    for index in chosen[2 * count // 3: count]:
        bright = 255 - (255 - test_images[index].astype("float64")) * 0.15
        images.append(("bright", bright.astype("uint8")))
    for index in chosen[count:]:
        gray = cv2.cvtColor(test_images[index], cv2.COLOR_RGB2GRAY)
        images.append(("grayscale", np.repeat(gray[..., None], 3, axis=2)))
    for colour in ((0, 0, 0), (255, 255, 255), (128, 128, 128), (224, 172, 150), (200, 120, 100)):
        images.append(("blank", np.full((150, 200, 3), colour, dtype="uint8")))
    for _ in range(5):
        images.append(("noise", rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)))
    return images


def withheld(checker: QualityChecker, images: list[np.ndarray]) -> np.ndarray:
    """Whether the image gate (image checks + distance) withholds each image, in batches."""
    flags = []
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH]
        distances = checker.distances(batch)
        for image, distance in zip(batch, distances):
            codes = {finding.code for finding in checker.gate.image_findings(image)}
            flags.append(bool(codes & WITHHOLD_CODES)
                         or distance > checker.gate.distance_threshold)
    return np.array(flags)


def set_images(set_name: str) -> tuple[pd.DataFrame, list[np.ndarray]] | None:
    folder_name, split = GATE_SETS[set_name]
    folder = data.resolve_data_dir(name=folder_name)
    if folder is None:
        print(f"  {set_name}: dataset folder {folder_name!r} not found, skipped", file=sys.stderr)
        return None
    labels = data.select_split(data.load_labels(folder), split)
    return labels, [data.load_image(path) for path in labels["path"]]


def gate_figures(checker: QualityChecker, args) -> dict:
    results = {}
    sets = {name: set_images(name) for name in GATE_SETS}
    for set_name, loaded in sets.items():
        if loaded is None:
            continue
        labels, images = loaded
        flags = withheld(checker, images)
        entry = {"n": int(len(images)), "false_alarm_rate": float(flags.mean())}
        if set_name == "ham10000_test":
            entry["by_class"] = {name: float(flags[labels["label"].to_numpy() == index].mean())
                                 for index, name in enumerate(CLASS_NAMES)}
        results[set_name] = entry
    if sets["ham10000_test"] is None:
        return results
    bad = skimage_photographs() + degraded_set(sets["ham10000_test"][1],
                                               np.random.default_rng(0), args.degraded)
    detected = withheld(checker, [image for _, image in bad])
    kinds = [name.split(":")[0] for name, _ in bad]
    results["unusable"] = {
        "n": int(len(bad)), "detection_rate": float(detected.mean()),
        "by_kind": {kind: {"n": kinds.count(kind),
                           "detected": float(detected[np.array(kinds) == kind].mean())}
                    for kind in sorted(set(kinds))},
        "missed": [name for (name, _), hit in zip(bad, detected) if not hit and ":" in name]}
    return results


def flag_figures(classifier, gate, catalogue) -> tuple[dict, list[dict]]:
    """Flag rate / error ratio per set and risk-coverage rows, from stored predictions."""
    thresholds = gate.uncertainty
    figures, curves = {}, []
    for set_name in FLAG_SETS:
        frame = evaluation.load_predictions(classifier.card, set_name)
        members = [evaluation.load_predictions(catalogue.cards[member], set_name)
                   for member in classifier.card.members]
        if frame is None or any(member is None for member in members):
            continue
        entropy, disagreement, correct = selective.stored_scores(frame, members or None)
        flags = selective.flag_mask(entropy, disagreement, thresholds)
        figures[set_name] = {
            "n": int(len(correct)), "flag_rate": float(flags.mean()),
            "error_rate_flagged": float((~correct[flags]).mean()) if flags.any() else None,
            "error_rate_unflagged": float((~correct[~flags]).mean()) if (~flags).any()
            else None,
            "error_ratio": selective.error_ratio(flags, correct)}
        table = selective.risk_coverage(
            selective.combined_score(entropy, disagreement, thresholds), correct)
        curves += [{"model": classifier.card.id, "set": set_name, **row}
                   for row in table.to_dict("records")]
    return figures, curves


def measure(model_id: str, catalogue, args) -> dict | None:
    classifier = registry.load_classifier(model_id, catalogue=catalogue)
    checker = QualityChecker(classifier)
    if checker.gate is None:
        print(f"{model_id}: no quality gate for {', '.join(checker.missing)}; run "
              "`python -m lesionlib fit-gate --model ID` first.", file=sys.stderr)
        return None
    flags, curves = flag_figures(classifier, checker.gate, catalogue)
    uncertainty = checker.gate.uncertainty
    return {"model": model_id, "model_version": classifier.card.version,
            "command": f"python scripts/benchmarks/benchmark_quality_gate.py --model {model_id}",
            "gate_thresholds": {name: _finite(getattr(checker.gate, name)) for name in (
                "distance_threshold", "min_gray_std", "min_sharpness", "max_sharpness",
                "min_brightness", "max_brightness", "min_colourfulness")},
            "gate": gate_figures(checker, args),
            "review_carefully": {"entropy_threshold": uncertainty.entropy,
                                 "disagreement_threshold": uncertainty.disagreement
                                 if classifier.card.kind == "ensemble" else None,
                                 "by_set": flags},
            "risk_coverage": curves}


def _finite(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def _percent(value) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.1%}"


def _ratio(value) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.2f}x"


def markdown(results: dict) -> str:
    lines = ["# Quality / out-of-distribution gate and 'review carefully' flags", "",
             "Written by `python scripts/benchmarks/benchmark_quality_gate.py` (one model: `--model ID`; "
             "needs ../shared/data). Gates and flag thresholds are fitted by "
             "`python -m lesionlib fit-gate --model ID` on training/validation data only.", "",
             "## Image gate (withholds the diagnosis)", "",
             "Detection on unusable images; false alarms on dermoscopic sets (HAM10000 test is "
             "the target set; ISIC 2017 val+test, PH2 and BCN20000 test come from other "
             "clinics).", "",
             "| model | detection (unusable) | false alarms HAM10000 test | ISIC 2017 | PH2 | "
             "BCN20000 test |", "|---|---|---|---|---|---|"]
    for model_id, entry in sorted(results.items()):
        gate = entry["gate"]
        lines.append(f"| `{model_id}` v{entry['model_version']} | "
                     f"{_percent(gate.get('unusable', {}).get('detection_rate'))} "
                     f"(n={gate.get('unusable', {}).get('n', 0)}) | "
                     + " | ".join(f"{_percent(gate.get(name, {}).get('false_alarm_rate'))} "
                                  f"(n={gate.get(name, {}).get('n', 0)})"
                                  for name in GATE_SETS) + " |")
    lines += ["", "Detection by kind of unusable image:", "",
              "| model | " + " | ".join(_kinds(results)) + " | missed |",
              "|---|" + "---|" * (len(_kinds(results)) + 1)]
    for model_id, entry in sorted(results.items()):
        unusable = entry["gate"].get("unusable", {})
        lines.append(f"| `{model_id}` | " + " | ".join(
            _percent(unusable.get("by_kind", {}).get(kind, {}).get("detected"))
            for kind in _kinds(results))
            + f" | {', '.join(unusable.get('missed', [])) or '—'} |")
    lines += ["", "False alarms by true class on the HAM10000 test split:", ""]
    for model_id, entry in sorted(results.items()):
        by_class = entry["gate"].get("ham10000_test", {}).get("by_class", {})
        lines.append(f"- `{model_id}`: " + ", ".join(f"{name} {_percent(rate)}"
                                                     for name, rate in by_class.items()))
    lines += ["", "## 'Review carefully' flags (nothing withheld)", "",
              "Thresholds chosen on HAM10000 validation (at most 20% flagged, error rate at "
              "least 2x the unflagged cases', most errors caught); the other sets are held "
              "out. Cell: share flagged · error-rate ratio flagged/unflagged.", "",
              "| model | thresholds | " + " | ".join(FLAG_SETS) + " |",
              "|---|---|" + "---|" * len(FLAG_SETS)]
    for model_id, entry in sorted(results.items()):
        flags = entry["review_carefully"]
        thresholds = f"entropy > {flags['entropy_threshold']:.3f}" + (
            f", disagreement > {flags['disagreement_threshold']:.3f}"
            if flags["disagreement_threshold"] is not None else "")
        lines.append(f"| `{model_id}` | {thresholds} | " + " | ".join(
            f"{_percent(flags['by_set'][name]['flag_rate'])} · "
            f"{_ratio(flags['by_set'][name]['error_ratio'])}" if name in flags["by_set"]
            else "—" for name in FLAG_SETS) + " |")
    lines += ["", "## Risk-coverage (selective classification)", "",
              "Error rate among the cases a model is most sure of (ranked by its combined "
              "uncertainty score), at each coverage; full table in "
              "`quality_gate_risk_coverage.csv`.", "",
              "| model | set | " + " | ".join(f"{c:.0%}" for c in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
              + " |", "|---|---|" + "---|" * 6]
    for model_id, entry in sorted(results.items()):
        curve = pd.DataFrame(entry["risk_coverage"])
        for set_name, rows in curve.groupby("set", sort=False):
            risks = rows.set_index("coverage")["risk"]
            lines.append(f"| `{model_id}` | {set_name} | " + " | ".join(
                _percent(risks.get(c)) for c in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) + " |")
    return "\n".join(lines) + "\n"


def _kinds(results: dict) -> list[str]:
    return sorted({kind for entry in results.values()
                   for kind in entry["gate"].get("unusable", {}).get("by_kind", {})})


def write_reports(results: dict, out: Path) -> None:
    (out / "quality_gate.json").write_text(json.dumps({"models": results}, indent=2) + "\n")
    (out / "quality_gate.md").write_text(markdown(results))
    pd.DataFrame([row for value in results.values() for row in value["risk_coverage"]]) \
        .to_csv(out / "quality_gate_risk_coverage.csv", index=False, float_format="%.4f")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="model id (repeatable; default all)")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--degraded", type=int, default=150)
    parser.add_argument("--merge-from", nargs="*", default=[], metavar="JSON",
                        help="also take these models' results from other runs' quality_gate.json"
                        " (runs done in parallel); with no --model, measure nothing else")
    args = parser.parse_args()
    catalogue = registry.discover()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "quality_gate.json"
    stored = json.loads(json_path.read_text()) if json_path.is_file() else {}
    results = stored.get("models", {}) if isinstance(stored, dict) else {}
    for other in args.merge_from:
        results.update(json.loads(Path(other).read_text())["models"])
    failed = 0
    for model_id in args.model or ([] if args.merge_from else sorted(catalogue.cards)):
        print(f"== {model_id}", flush=True)
        entry = measure(model_id, catalogue, args)
        if entry is None:
            failed += 1
            continue
        results[model_id] = entry
        write_reports(results, out)
    if args.merge_from:
        write_reports(results, out)
    print((out / "quality_gate.md").read_text() if results else "No model measured.")
    return 2 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
