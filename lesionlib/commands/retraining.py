"""Retraining from reviewers' corrections: ``retrain``, ``rollback``.

Each function takes the parsed arguments of its command (``lesionlib.cli``) and returns the exit
status; a mistake in the input raises ``common.UsageError``."""

from __future__ import annotations

import sys
from pathlib import Path

from lesionlib.commands import common


def retrain(args) -> int:
    """Fine-tune a challenger from approved corrections; promote it or keep it as rejected."""
    from lesionlib import retraining, retraining_job
    from lesionlib.cards import shell_command
    from lesionlib.feedback import FeedbackStore, FeedbackStoreError
    from lesionlib.registry import default_weights_dir

    weights = Path(args.weights or default_weights_dir())
    from lesionlib.registry import discover

    catalogue = discover(weights)
    if args.model in catalogue.cards:  # an unknown id is reported by retraining itself
        common.seven_class_card(args.model, catalogue, "retrain")
    if args.new_images and not (Path(args.new_images) / "labels.csv").is_file():
        raise common.UsageError(f"--new-images {args.new_images}: no labels.csv; expected a folder "
                                "with labels.csv (columns image_id, file, label) and the images.")
    if args.epochs < 1 or not 0 < args.learning_rate < 1:
        raise common.UsageError(f"--epochs must be >= 1 and --learning-rate in (0, 1); received "
                                f"{args.epochs} and {args.learning_rate}.")
    options = retraining.Options(
        model_id=args.model, weights_dir=weights, ham10000=common.data_folder(args.data),
        new_images=Path(args.new_images) if args.new_images else None, epochs=args.epochs,
        learning_rate=args.learning_rate, user=args.user, command=shell_command(sys.argv))
    try:
        token = retraining_job.acquire(weights, args.model, args.user, args.job_token)
    except retraining_job.JobRunning as error:
        raise common.UsageError(str(error)) from None
    progress = retraining_job.Progress(weights)
    try:
        store = FeedbackStore(args.feedback_url)
        if args.judge:
            decision = retraining.judge(options, Path(args.judge), store,
                                        log=lambda line: print(line, flush=True))
        else:
            decision = retraining.run(options, store, log=lambda line: print(line, flush=True),
                                      progress=progress)
    except (retraining.RetrainingError, FeedbackStoreError) as error:
        progress("failed", error=str(error))
        raise common.UsageError(str(error)) from None
    except BaseException as error:
        progress("failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        retraining_job.release(weights, token)
    print(f"Decision written to {decision['candidate']}/decision.json")
    return 0


def rollback(args) -> int:
    from lesionlib import promotion, retraining_job
    from lesionlib.feedback import FeedbackStore
    from lesionlib.registry import default_weights_dir

    weights = Path(args.weights or default_weights_dir())
    ham10000 = None
    try:
        ham10000 = common.data_folder(args.data)
    except common.UsageError:
        pass  # only needed to refit an ensemble's gate; the log says so
    try:
        token = retraining_job.acquire(weights, args.model, args.user, args.job_token)
    except retraining_job.JobRunning as error:
        raise common.UsageError(str(error)) from None
    progress = retraining_job.Progress(weights)
    progress("rolling back", version=args.version)
    try:
        refreshed = promotion.rollback(weights, args.model, args.version, args.user,
                                        FeedbackStore(args.feedback_url), ham10000,
                                        log=lambda line: print(line, flush=True))
    except KeyError as error:
        progress("failed", error=error.args[0])
        raise common.UsageError(error.args[0]) from None
    except BaseException as error:
        progress("failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        retraining_job.release(weights, token)
    progress("done", verdict="rolled back", version=args.version)
    print(f"{args.model} is now v{args.version}" + (f"; ensembles refreshed: "
                                                    f"{', '.join(refreshed)}" if refreshed
                                                    else ""))
    return 0
