"""Bringing a Keras model trained elsewhere in for audit: ``import-model``.

Each function takes the parsed arguments of its command (``lesionlib.cli``) and returns the exit
status; a mistake in the input raises ``common.UsageError``."""

from __future__ import annotations

from pathlib import Path

from lesionlib.commands import common


def import_model(args) -> int:
    from lesionlib import model_import
    from lesionlib.registry import default_weights_dir

    try:
        request = model_import.ImportRequest(
            file=Path(args.file), model_id=args.id, name=args.name,
            classes=model_import.parse_classes(args.classes) if args.classes
            else model_import.ImportRequest.classes,
            scaling=args.scaling, training_data=args.training_data or model_import.NOT_DECLARED,
            licence=args.licence or model_import.NOT_DECLARED,
            description=args.description or "")
        weights = Path(args.weights) if args.weights else default_weights_dir()
        card = model_import.import_model(request, weights)
    except model_import.ImportRefused as error:
        raise common.UsageError(str(error)) from None
    print(f"Imported {card.id} v{card.version} ({card.name}) into {card.folder}: input "
          f"{card.input_size} px, heatmaps from layer {card.cam_layer}. It is marked NOT "
          "evaluated until you measure it on the fixed sets:\n"
          f"  python -m lesionlib evaluate --model {card.id}\n"
          f"  python -m lesionlib fit-gate --model {card.id}")
    return 0
