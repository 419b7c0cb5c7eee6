"""Command line for model-folder integrity: ``seal``, ``verify``, ``sign``, ``make-signing-key``.

Registered on ``python -m lesionlib`` by ``lesionlib.cli``; the work is done by
``lesionlib.integrity``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _model_folders(args) -> list[Path]:
    """The folders named by ``--model`` (default: every folder) under ``--weights``.

    Raises:
        ValueError: a named model has no folder.
    """
    from lesionlib.registry import default_weights_dir

    weights = Path(args.weights or default_weights_dir())
    if not args.model:
        return sorted(path for path in weights.iterdir() if path.is_dir()) \
            if weights.is_dir() else []
    missing = [model for model in args.model if not (weights / model).is_dir()]
    if missing:
        raise ValueError(f"no model folder {', '.join(map(repr, missing))} in {weights}.")
    return [weights / model for model in args.model]


def _command_seal(args) -> int:
    from lesionlib.cards import CardError, read_card
    from lesionlib.integrity import manifest_changes, seal

    failed = 0
    for folder in _model_folders(args):
        try:
            read_card(folder)
        except CardError as error:
            print(f"{folder.name}: not sealed: {error}", file=sys.stderr)
            failed += 1
            continue
        changes = manifest_changes(folder)
        seal(folder)
        print(f"{folder.name}: sealed" + (f" ({'; '.join(changes)})" if changes
                                          else " (unchanged)"))
    return 1 if failed else 0


def _command_verify(args) -> int:
    from lesionlib import registry

    catalogue = registry.discover(args.weights)
    for model_id in sorted(catalogue.cards):
        print(f"{model_id}: ok")
    for folder, reason in sorted(catalogue.problems.items()):
        print(f"{folder}: REFUSED: {reason}", file=sys.stderr)
    return 1 if catalogue.problems else 0


def _command_sign(args) -> int:
    from lesionlib.integrity import IntegrityError, key_id, load_private_key, sign_folder

    key = load_private_key(args.key)
    failed = 0
    for folder in _model_folders(args):
        try:
            sign_folder(folder, key)
        except IntegrityError as error:
            print(f"{folder.name}: not signed: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{folder.name}: signed with key {key_id(key.public_key())}")
    return 1 if failed else 0


def _command_make_key(args) -> int:
    from lesionlib.integrity import generate_key_pair

    try:
        identifier = generate_key_pair(args.private, args.public)
    except FileExistsError:
        print(f"error: {args.private} already exists; refusing to overwrite a key.",
              file=sys.stderr)
        return 2
    print(f"Wrote private key {args.private} (keep it off the server) and public key "
          f"{args.public} (key id {identifier}).")
    return 0


def _with_errors(handler):
    """Run a handler; a ``ValueError`` (bad argument, unreadable key) is a message, exit 2."""
    def run(args) -> int:
        try:
            return handler(args)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return run


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the integrity commands on the ``python -m lesionlib`` subparsers."""
    seal = commands.add_parser("seal", help="Write each model folder's manifest.json (sha256 "
                               "of every file); prints what changed since the last seal.")
    verify = commands.add_parser("verify", help="Check every model folder against its "
                                 "manifest (and signature, if $LESIONLIB_TRUSTED_KEYS is set).")
    sign = commands.add_parser("sign", help="Sign each model folder's manifest with an "
                               "Ed25519 private key (manifest.sig).")
    sign.add_argument("--key", required=True, help="Ed25519 private key (PEM)")
    for parser in (seal, verify, sign):
        parser.add_argument("--weights", help="weights folder (default: weights/)")
    for parser in (seal, sign):
        parser.add_argument("--model", action="append",
                            help="model id (repeatable; default: every folder)")
    seal.set_defaults(handler=_with_errors(_command_seal))
    verify.set_defaults(handler=_with_errors(_command_verify))
    sign.set_defaults(handler=_with_errors(_command_sign))
    key = commands.add_parser("make-signing-key", help="Create an Ed25519 key pair for `sign`.")
    key.add_argument("--private", required=True, help="where to write the private key (PEM)")
    key.add_argument("--public", required=True, help="where to write the public key (PEM)")
    key.set_defaults(handler=_with_errors(_command_make_key))
