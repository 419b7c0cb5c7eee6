"""Weight-space interpolation of a fine-tuned model with the model it started from (WiSE-FT).

Fine-tuning a model on a second clinic's images moves it away from what it knew of the first;
averaging the two weight sets, ``(1 - alpha) * start + alpha * end``, often keeps most of what each
end knows (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). ``alpha`` is
chosen on the validation splits, never on a test split: ``interpolate-weights`` scores every alpha
on HAM10000 validation and each other clinic's validation split the fine-tuned run was scored on,
and writes each mix as a run folder (``best.keras`` + ``state.json``) that ``package`` installs
like any training run, its card recording the two ends and the mixing weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lesionlib.cards import sha256_of
from lesionlib.classes import CLASS_NAMES
from lesionlib.metrics import balanced_accuracy


class InterpolationError(ValueError):
    """Two models whose weights cannot be mixed, or a mixing weight out of range."""


def load_model(path: Path):
    """A Keras model file, loaded in safe mode without its optimizer."""
    import keras

    from lesionlib import colour  # noqa: F401  (registers the colour-constancy layer)

    return keras.models.load_model(Path(path), compile=False, safe_mode=True)


def mix(start, end, alpha: float):
    """``end``'s graph with the weights ``(1 - alpha) * start + alpha * end``.

    Raises:
        InterpolationError: alpha outside [0, 1], or the models' weights differ in number or shape
            (they are not the same architecture, so their weights have no common meaning).
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise InterpolationError(f"alpha: expected a mixing weight from 0 to 1; received {alpha}.")
    first, second = start.get_weights(), end.get_weights()
    shapes = [weight.shape for weight in first], [weight.shape for weight in second]
    if shapes[0] != shapes[1]:
        raise InterpolationError(
            f"The two models' weights differ ({len(first)} arrays against {len(second)}, or "
            "their shapes): expected a fine-tuned model and the very model it started from.")
    end.set_weights([(1.0 - alpha) * a + alpha * b if np.issubdtype(a.dtype, np.floating) else b
                     for a, b in zip(first, second)])
    return end


def score(model, sets: dict, batch_size: int = 64) -> dict:
    """``{name: {"balanced_accuracy", "melanoma_auc"}}`` of ``model`` on ``{name: (images,
    labels)}`` (images framed at the model's input size, RGB 0-255)."""
    from sklearn.metrics import roc_auc_score

    melanoma = CLASS_NAMES.index("mel")
    scores = {}
    for name, (images, labels) in sets.items():
        probabilities = model.predict(np.asarray(images), batch_size=batch_size, verbose=0)
        scores[name] = {
            "balanced_accuracy": balanced_accuracy(labels, probabilities.argmax(axis=1)),
            "melanoma_auc": float(roc_auc_score(labels == melanoma, probabilities[:, melanoma]))}
    return scores


def validation_sets(folder: Path, size: int, extra: tuple[str, ...]) -> dict:
    """HAM10000's validation split and the ``val`` split of each ``extra`` set, framed at
    ``size`` (from the image cache the training run filled)."""
    from lesionlib import data

    sets = {}
    for name in ("ham10000", *extra):
        source = folder if name == "ham10000" else data.resolve_data_dir(name=name)
        if source is None:
            raise FileNotFoundError(f"Validation set {name!r} not found beside {folder}.")
        frame = data.select_split(data.load_labels(source), "val")
        frame = frame[frame["label"] >= 0].reset_index(drop=True)
        sets[name] = (np.asarray(data.cached_images(frame, size, f"{name}_val")),
                      frame["label"].to_numpy("int32"))
    return sets


def mixing_table(rows: list[dict], names: list[str]) -> str:
    """The validation scores of every alpha as a Markdown table."""
    header = ["alpha"] + [f"{name} val {metric}" for name in names
                          for metric in ("BA", "mel. AUC")] + ["mean BA"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{row['alpha']:.2f}"]
        for name in names:
            cells += [f"{row['scores'][name]['balanced_accuracy']:.4f}",
                      f"{row['scores'][name]['melanoma_auc']:.4f}"]
        cells.append(f"{row['selection_score']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interpolate_run(start_file: Path, run_dir: Path, alphas: list[float], out_dir: Path,
                    folder: Path, command: str, log=print) -> list[dict]:
    """Mix ``start_file`` with ``run_dir``'s ``best.keras`` at each alpha, score every mix on the
    validation splits, and write ``out_dir/alpha-A/`` (``best.keras`` and a ``state.json`` that
    ``package`` reads); return the rows of ``mixing_table``.

    Raises:
        FileNotFoundError: a model file or ``state.json`` is missing.
        InterpolationError: the two models cannot be mixed.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    end_file = run_dir / "best.keras"
    for path in (Path(start_file), end_file, run_dir / "state.json"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; expected the model the run started "
                                    "from and a finished `train` run folder.")
    state = json.loads((run_dir / "state.json").read_text())
    config = state["config"]
    extra = tuple(config.get("extra_validation_sets") or ())
    sets = validation_sets(folder, int(config["image_size"]), extra)
    start, end = load_model(start_file), load_model(end_file)
    end_weights = end.get_weights()  # mix() overwrites end's weights; start's never change
    ends = {"start": str(start_file), "start_sha256": sha256_of(Path(start_file)),
            "fine_tuned": str(end_file), "fine_tuned_sha256": sha256_of(end_file)}
    rows = []
    for alpha in alphas:
        model = mix(start, end, alpha)
        scores = score(model, sets)
        row = {"alpha": float(alpha), "scores": scores, "selection_score": float(
            np.mean([value["balanced_accuracy"] for value in scores.values()]))}
        rows.append(row)
        log(f"alpha {alpha:.2f}: " + ", ".join(
            f"{name} val BA {value['balanced_accuracy']:.4f} / AUC {value['melanoma_auc']:.4f}"
            for name, value in scores.items()))
        target = out_dir / f"alpha-{alpha:.2f}"
        target.mkdir(parents=True, exist_ok=True)
        model.save(target / "best.keras")
        mixed_state = {**state, "best": {"phase": "interpolation", "alpha": float(alpha)},
                       "best_val_balanced_accuracy": scores["ham10000"]["balanced_accuracy"],
                       "best_selection_score": row["selection_score"],
                       "interpolation": {
                           "method": "weight-space interpolation (WiSE-FT): (1 - alpha) * start "
                                     "+ alpha * fine-tuned, alpha chosen on validation",
                           "alpha": float(alpha), **ends, "validation": scores,
                           "command": command}}
        (target / "state.json").write_text(json.dumps(mixed_state, indent=2))
        end.set_weights(end_weights)  # the next alpha mixes the original two ends again
    (out_dir / "interpolation.md").write_text(mixing_table(rows, list(sets)) + "\n")
    return rows
