"""Bringing a Keras model trained elsewhere in for audit: ``import-model``.

Each function takes the parsed arguments of its command (``lesionlib.cli``) and returns the exit
status; a mistake in the input raises ``common.UsageError``."""

from __future__ import annotations

from pathlib import Path

from lesionlib.commands import common


def import_model(args) -> int:
    from lesionlib import retraining_job
    from lesionlib.registry import default_weights_dir

    weights = Path(args.weights) if args.weights else default_weights_dir()
    progress = retraining_job.Progress(weights) if args.job_token else (lambda *a, **k: None)
    progress("importing", model=args.id)
    try:
        return _import(args, weights, progress)
    except common.UsageError as error:
        progress("failed", error=str(error))
        raise
    finally:
        if args.job_token:
            retraining_job.release(weights, args.job_token)


def _import(args, weights: Path, progress) -> int:
    from lesionlib import model_import

    if args.binary_melanoma and args.classes:
        raise common.UsageError("--classes and --binary-melanoma: choose one; a binary melanoma "
                                "model has no seven-class order (say its melanoma output with "
                                "--melanoma-output).")
    if args.melanoma_output is not None and not args.binary_melanoma:
        raise common.UsageError("--melanoma-output is for a binary melanoma model: add "
                                "--binary-melanoma.")
    try:
        request = model_import.ImportRequest(
            file=Path(args.file), model_id=args.id, name=args.name,
            classes=model_import.parse_classes(args.classes) if args.classes
            else model_import.ImportRequest.classes,
            scaling=args.scaling, training_data=args.training_data or model_import.NOT_DECLARED,
            licence=args.licence or model_import.NOT_DECLARED,
            description=args.description or "", binary_melanoma=args.binary_melanoma,
            melanoma_output=args.melanoma_output)
        card = model_import.import_model(request, weights)
    except model_import.ImportRefused as error:
        raise common.UsageError(str(error)) from None
    print(f"Imported {card.id} v{card.version} ({card.name}) into {card.folder}: input "
          f"{card.input_size} px, heatmaps from layer {card.cam_layer}.", flush=True)
    if not args.evaluate:
        print("It is marked NOT evaluated until you measure it on the fixed sets:\n"
              f"  python -m lesionlib evaluate --model {card.id}\n"
              f"  python -m lesionlib fit-gate --model {card.id}")
        progress("done", verdict="imported, not evaluated", version=card.version)
        return 0
    progress("evaluating", model=card.id)
    try:
        card = model_import.evaluate_imported(card.id, weights, common.data_folder(args.data),
                                              log=lambda line: print(line, flush=True))
    except model_import.ImportRefused as error:
        raise common.UsageError(str(error)) from None
    test = card.metrics.get("ham10000_test", {})
    if card.is_binary:
        print(f"{card.id}: evaluated and gated; HAM10000 test melanoma AUC "
              f"{test.get('melanoma_auc') or float('nan'):.3f}, sensitivity "
              f"{test.get('melanoma_sensitivity') or float('nan'):.3f} and specificity "
              f"{test.get('melanoma_specificity') or float('nan'):.3f} at its threshold "
              f"{card.melanoma_threshold:.3f}.")
    else:
        print(f"{card.id}: evaluated and gated; HAM10000 test balanced accuracy "
              f"{test.get('balanced_accuracy', float('nan')):.3f}, melanoma AUC "
              f"{test.get('melanoma_auc') or float('nan'):.3f}.")
    progress("done", verdict="imported and evaluated", version=card.version)
    return 0
