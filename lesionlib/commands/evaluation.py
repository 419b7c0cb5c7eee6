"""Measuring a model: ``evaluate``, ``stress-test``, ``fit-gate``, ``export`` (and the edge
model's evaluation).

Each function takes the parsed arguments of its command (``lesionlib.cli``) and returns the exit
status; a mistake in the input raises ``common.UsageError``."""

from __future__ import annotations

import sys
from pathlib import Path

from lesionlib.commands import common


def evaluate(args) -> int:
    from lesionlib import evaluation, registry

    catalogue = registry.discover(args.weights)
    cards = [common.card(model_id, catalogue)
             for model_id in (args.model or sorted(catalogue.cards))]
    if not cards:
        raise common.UsageError(f"No models in the weights folder "
                                f"{args.weights or registry.default_weights_dir()}.")
    if not args.summary_only:
        common.data_folder(None)  # calibration needs the HAM10000 validation split
    command = " ".join(["python -m lesionlib evaluate",
                        *(f"--model {model_id}" for model_id in args.model or [])])
    # Singles first: an ensemble is evaluated from its members' stored predictions.
    for card in [] if args.summary_only else sorted(cards, key=lambda c: c.kind != "single"):
        if card.kind == "edge":
            print_headline(evaluate_edge(card, catalogue, command))
            continue
        if card.kind == "single":
            frames = predict_sets(registry.load_single(card))
        else:
            frames = evaluation.ensemble_uncalibrated(
                [registry.get_card(member, catalogue) for member in card.members])
        if "ham10000_val" not in frames:
            raise common.UsageError(f"{card.id}: no HAM10000 validation predictions to calibrate "
                                    "on (for an ensemble, evaluate its members first).")
        card, _ = evaluation.finish_evaluation(card, frames, command)
        print_headline(card)
    evaluated = registry.discover(args.weights)
    # integrity: a refused model is named on stderr and in the reports, never listed silently
    for model_id, reason in sorted(evaluated.problems.items()):
        print(f"REFUSED {model_id}: {reason}", file=sys.stderr)
    evaluation.write_summary([evaluated.cards[model_id] for model_id in sorted(evaluated.cards)],
                             Path(args.report_dir) / "evaluation.json",
                             Path(args.report_dir) / "evaluation.md",
                             "python -m lesionlib evaluate" if args.summary_only else command,
                             refused=evaluated.problems)
    print(f"Reports written to {args.report_dir}/evaluation.json and evaluation.md")
    # Evaluating a member makes its ensemble stale until `ensemble` rebuilds it: a refusal of a
    # model not asked for is reported above but does not fail `evaluate --model ID`.
    asked = set(args.model or ())
    return 1 if any(not asked or model_id in asked for model_id in evaluated.problems) else 0


def predict_sets(model) -> dict:
    """Uncalibrated predictions of one model on every evaluation set that is available."""
    from lesionlib import evaluation

    frames = {}
    for set_name in evaluation.EVALUATION_SETS:
        try:
            frames[set_name] = evaluation.predict_set(model, set_name)
        except FileNotFoundError as error:
            print(f"  skipping {set_name}: {error}", file=sys.stderr)
            continue
        print(f"{model.card.id}: predicted {set_name}", flush=True)
    return frames


def print_headline(card) -> None:
    test = card.metrics.get("ham10000_test", {})
    print(f"{card.id}: T={card.temperature:.3f} threshold={card.melanoma_threshold:.3f} "
          f"test balanced accuracy={test.get('balanced_accuracy', float('nan')):.4f} "
          f"melanoma AUC={test.get('melanoma_auc') or float('nan'):.4f} "
          f"ECE {test.get('ece_before_temperature', float('nan')):.4f} -> "
          f"{test.get('ece', float('nan')):.4f}", flush=True)


def stress_test(args) -> int:
    from lesionlib import registry, robustness

    folder = common.data_folder(args.data)
    catalogue = registry.discover(args.weights)
    card = common.seven_class_card(args.model, catalogue, "stress-test")
    classifier = registry.load_classifier(card.id, catalogue=catalogue)
    frame = robustness.stress_test_model(classifier, folder, limit=args.limit,
                                         log=lambda message: print(message, flush=True))
    command = f"python -m lesionlib stress-test --model {card.id}"
    described = f"HAM10000 test split, {'first ' + str(args.limit) if args.limit else 'all'} images"
    robustness.write_report(Path(args.report_dir), card.id, card.version, frame, command,
                            described)
    worst = frame.iloc[1:]["ba_drop"].max()
    print(f"{card.label}: largest balanced-accuracy drop {worst:+.3f} (target <= "
          f"{robustness.TARGET_DROP}); written to {args.report_dir}/{robustness.REPORT_MARKDOWN}")
    return 0


def fit_gate(args) -> int:
    """Fit a model's quality gate on its own features, and its "review carefully" thresholds on
    its stored validation predictions; an ensemble's gate combines its members' gates."""
    from lesionlib.gate_fitting import GateFitError, fit_model_gate

    try:
        fitted = fit_model_gate(args.model, args.weights, common.data_folder(args.data),
                                args.per_class, args.thresholds_only, args.max_flag_rate,
                                args.min_error_ratio)
    except GateFitError as error:
        raise common.UsageError(str(error)) from None
    gate, thresholds = fitted.gate, fitted.thresholds
    print(f"Quality gate written to {fitted.path}: distance threshold "
          f"{gate.distance_threshold:.2f}{' (members combined)' if gate.members else ''}, min "
          f"grey std {gate.min_gray_std:.1f}, min sharpness {gate.min_sharpness:.1f}, "
          f"brightness {gate.min_brightness:.0f}-{gate.max_brightness:.0f}, min colourfulness "
          f"{gate.min_colourfulness:.1f}")
    if not thresholds.meets_rule:
        print(f"warning: no uncertainty threshold flags at most {args.max_flag_rate:.0%} of "
              f"validation cases with >= {args.min_error_ratio}x the error rate; the "
              "'review carefully' flag is off for this model.", file=sys.stderr)
        return 0
    print(f"Review-carefully flag: entropy > {thresholds.entropy:.3f}"
          + (f" or disagreement > {thresholds.disagreement:.3f}" if fitted.has_disagreement
             else "")
          + f"; on validation {thresholds.flag_rate:.1%} flagged, error rate "
          f"{thresholds.error_ratio:.2f}x the unflagged cases'")
    return 0


def evaluate_edge(card, catalogue, command: str, latency_runs: int = 50):
    """Metrics, quality gate and parent parity of an edge model (``lesionlib.edge``)."""
    from lesionlib import edge
    from lesionlib.imaging import load_image
    from lesionlib.registry import REPO_ROOT

    # Latency is timed on the first bundled sample image (HAM10000 test split).
    sample = load_image(sorted((REPO_ROOT / "sample_images").glob("*.jpg"))[0])
    return edge.evaluate_edge(card, catalogue, command, sample, latency_runs,
                              log=lambda message: print(message, flush=True))


def export(args) -> int:
    from lesionlib import edge, registry

    quantization = "int8" if args.int8 else "float16"
    weights = Path(args.weights or registry.default_weights_dir())
    report = Path(args.report)
    if not args.report_only:
        if not args.model:
            raise common.UsageError("--model is required (the id of a single model) unless "
                                    "--report-only.")
        parent = common.seven_class_card(args.model, registry.discover(weights), "export")
        try:
            representative = (edge.representative_images(parent.input_size, args.per_class,
                                                         args.data)
                              if quantization == "int8" else None)
            card = edge.export_edge(parent, quantization, weights, representative, args.id,
                                    command=" ".join(["python -m lesionlib", *sys.argv[1:]]))
        except (edge.EdgeExportError, FileNotFoundError) as error:
            raise common.UsageError(error.args[0] if error.args else str(error)) from None
        print(f"Exported {card.id}: {card.edge['file_size_bytes'] / 1e6:.2f} MB "
              f"({card.edge['size_ratio']:.1%} of {parent.id}'s model.keras), input "
              f"{card.edge['input']}", flush=True)
        if args.no_evaluate:
            print("Not evaluated (--no-evaluate): the card carries the parent's calibration; "
                  f"run `{card.reproduce['evaluate']}`.")
            return 0
        try:
            card = evaluate_edge(card, registry.discover(weights), card.reproduce["evaluate"],
                                  args.latency_runs)
        except FileNotFoundError as error:
            raise common.UsageError(str(error)) from None
        print_headline(card)
    print(f"Report written to {edge.write_report(registry.discover(weights), report)}")
    return 0
