"""Integrity of model folders: a sealed manifest of sha256 digests, optionally signed.

Every file in ``weights/<model id>/`` shapes what the dashboard shows (the weights, the card's
temperature and melanoma threshold, the quality gate, the stored predictions, and any file added
later). ``seal(folder)`` lists each of them with its sha256 in ``manifest.json``; the commands that
write into a folder (package, ensemble, evaluate, fit-gate) call it. ``verify_folder`` refuses a
folder whose files differ from its manifest, that has a file the manifest does not list, or that
lists a missing one. ``read_verified`` reads one file and checks it against the manifest in the
same step, so what is parsed is what was sealed.

A manifest alone is caught out by an edit of a file *and* its manifest. A deployment closes that
gap with Ed25519 signatures: ``sign_folder`` writes ``manifest.sig`` with a private key kept off
the server, and when ``$LESIONLIB_TRUSTED_KEYS`` names public key files (PEM, separated by
``os.pathsep``), a folder without a valid signature from one of them is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from lesionlib.cards import ModelIntegrityError, replace_in_model_folder, sha256_of

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
MANIFEST_FORMAT = "lesionlib-manifest/1"
TRUSTED_KEYS_ENV = "LESIONLIB_TRUSTED_KEYS"
_NOT_HASHED = {MANIFEST_FILE, SIGNATURE_FILE}


class IntegrityError(ModelIntegrityError):
    """A model folder differs from its manifest, or its signature is missing or wrong."""


# ----------------------------------------------------------------------------- manifests

def folder_digests(folder: str | Path) -> dict[str, str]:
    """``relative posix path -> sha256`` of every file under ``folder`` except the seal itself."""
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): sha256_of(path)
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.relative_to(folder).as_posix() not in _NOT_HASHED}


def manifest_bytes(folder: str | Path) -> bytes:
    """The manifest that ``seal`` would write for ``folder`` now."""
    folder = Path(folder)
    manifest = {"format": MANIFEST_FORMAT, "model": folder.name,
                "files": folder_digests(folder)}
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def seal(folder: str | Path) -> Path:
    """Write ``folder/manifest.json`` listing the sha256 of every file in the folder.

    Call it after writing into a model folder. A signature of an older manifest no longer
    matches and is removed (sign the folder again where signatures are required).

    Returns:
        The manifest's path.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    content = manifest_bytes(folder)
    if path.is_file() and path.read_bytes() == content:
        return path
    replace_in_model_folder(path, content)
    (folder / SIGNATURE_FILE).unlink(missing_ok=True)
    return path


def _parse_manifest(folder: Path, content: bytes) -> dict[str, str]:
    """The manifest's ``files`` mapping, after checking its shape and its model id."""
    where = f"Model folder {folder.name!r}: {MANIFEST_FILE}"
    try:
        manifest = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IntegrityError(f"{where} is not valid JSON ({error}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("files"), dict):
        raise IntegrityError(f"{where} is not a manifest: expected an object with format "
                             f"{MANIFEST_FORMAT!r} and a 'files' object.")
    if manifest.get("model") != folder.name:
        raise IntegrityError(f"{where} belongs to model {manifest.get('model')!r}, not to this "
                             "folder: a manifest cannot be copied from another model.")
    files = manifest["files"]
    for name, digest in files.items():
        if not isinstance(digest, str) or name.startswith("/") or ".." in name.split("/"):
            raise IntegrityError(f"{where} has an invalid entry {name!r}: expected a relative "
                                 "path inside the folder and a sha256 string.")
    return files


def _sealed_files(folder: Path, check_signature: bool = True) -> dict[str, str]:
    """The folder's manifest entries, once the manifest (and its signature, if required) pass."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise IntegrityError(
            f"Model folder {folder.name!r} has no {MANIFEST_FILE}: it was never sealed, or its "
            "manifest was removed, so its files cannot be checked. After checking them, seal "
            f"it with `python -m lesionlib seal --model {folder.name}`.")
    try:
        content = path.read_bytes()
    except OSError as error:
        raise IntegrityError(f"Model folder {folder.name!r}: {MANIFEST_FILE} could not be read "
                             f"({error.strerror or error}).") from None
    files = _parse_manifest(folder, content)
    if check_signature:
        verify_signature(folder, content)
    return files


def _mismatch(folder: Path, name: str, actual: str, expected: str) -> IntegrityError:
    return IntegrityError(
        f"Model folder {folder.name!r}: {name} was changed after the folder was sealed (sha256 "
        f"{actual[:16]}..., {MANIFEST_FILE} expects {expected[:16]}...). Refusing the model.")


def verify_folder(folder: str | Path, check_signature: bool = True) -> dict[str, str]:
    """Check every file of a model folder against its manifest (and signature, if required).

    Args:
        folder: the model folder.
        check_signature: check ``manifest.sig`` when ``$LESIONLIB_TRUSTED_KEYS`` is set.

    Returns:
        The verified ``relative path -> sha256`` mapping.

    Raises:
        IntegrityError: naming the first file that differs, is missing or is not listed.
    """
    folder = Path(folder)
    expected = _sealed_files(folder, check_signature)
    try:
        actual = folder_digests(folder)
    except OSError as error:
        raise IntegrityError(f"Model folder {folder.name!r}: {error.filename or 'a file'} could "
                             f"not be read ({error.strerror or error}). Refusing the model.") \
            from None
    for name, digest in sorted(expected.items()):
        if name not in actual:
            raise IntegrityError(f"Model folder {folder.name!r}: {name} is listed in "
                                 f"{MANIFEST_FILE} but missing. Refusing the model.")
        if actual[name] != digest:
            raise _mismatch(folder, name, actual[name], digest)
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise IntegrityError(f"Model folder {folder.name!r}: {', '.join(extra)} "
                             f"{'is' if len(extra) == 1 else 'are'} not listed in "
                             f"{MANIFEST_FILE} (added after sealing). Refusing the model.")
    return expected


def manifest_digest(folder: str | Path) -> str:
    """The sha256 of ``folder/manifest.json``: changes whenever any sealed file changes."""
    return sha256_of(Path(folder) / MANIFEST_FILE)


def read_verified(folder: str | Path, name: str) -> bytes:
    """Read ``folder/name`` and check its bytes against the folder's manifest.

    Raises:
        IntegrityError: the file is not listed, is missing, or differs from its manifest entry.
    """
    folder = Path(folder)
    files = _sealed_files(folder)
    if name not in files:
        raise IntegrityError(f"Model folder {folder.name!r}: {name} is not listed in "
                             f"{MANIFEST_FILE}. Refusing to read it.")
    try:
        content = (folder / name).read_bytes()
    except OSError as error:
        raise IntegrityError(f"Model folder {folder.name!r}: {name} could not be read "
                             f"({error.strerror or error}).") from None
    actual = hashlib.sha256(content).hexdigest()
    if actual != files[name]:
        raise _mismatch(folder, name, actual, files[name])
    return content


def manifest_changes(folder: str | Path) -> list[str]:
    """What sealing ``folder`` now would change: ``added/changed/removed: path`` lines."""
    folder = Path(folder)
    try:
        old = _parse_manifest(folder, (folder / MANIFEST_FILE).read_bytes())
    except (OSError, IntegrityError):
        old = {}
    new = folder_digests(folder)
    return ([f"added: {name}" for name in sorted(set(new) - set(old))]
            + [f"changed: {name}" for name in sorted(set(new) & set(old))
               if new[name] != old[name]]
            + [f"removed: {name}" for name in sorted(set(old) - set(new))])


# ----------------------------------------------------------------------------- signatures

def key_id(public_key) -> str:
    """A short fingerprint of an Ed25519 public key (first 16 hex digits of its sha256)."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 private key (PEM, mode 600) and its public key (PEM).

    Returns:
        The public key's id.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_key = Ed25519PrivateKey.generate()
    private_path, public_path = Path(private_path), Path(public_path)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    public_path.write_bytes(private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(private_key.public_key())


def load_private_key(path: str | Path):
    """An Ed25519 private key from a PEM file.

    Raises:
        ValueError: the file is missing or is not an unencrypted Ed25519 private key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a readable PEM private key ({error}).") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: expected an Ed25519 private key, received "
                         f"{type(key).__name__}.")
    return key


def load_public_key(path: str | Path):
    """An Ed25519 public key from a PEM file.

    Raises:
        ValueError: the file is missing or is not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a readable PEM public key ({error}).") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: expected an Ed25519 public key, received "
                         f"{type(key).__name__}.")
    return key


def trusted_keys() -> dict[str, object]:
    """``key id -> public key`` named by ``$LESIONLIB_TRUSTED_KEYS`` (read at each call).

    Raises:
        IntegrityError: a named key file cannot be used (then every model is refused: a broken
            setting never means unchecked models).
    """
    keys = {}
    for entry in os.environ.get(TRUSTED_KEYS_ENV, "").split(os.pathsep):
        if entry.strip():
            try:
                key = load_public_key(entry.strip())
            except ValueError as error:
                raise IntegrityError(f"{TRUSTED_KEYS_ENV}: {error} Every model is refused "
                                     "until the setting names valid public keys.") from None
            keys[key_id(key)] = key
    return keys


def sign_folder(folder: str | Path, private_key) -> Path:
    """Verify ``folder`` against its manifest, then write ``manifest.sig`` signing the manifest.

    Raises:
        IntegrityError: the folder does not match its manifest (a changed folder is never
            signed; seal it first if the change is intended).
    """
    folder = Path(folder)
    verify_folder(folder, check_signature=False)
    content = (folder / MANIFEST_FILE).read_bytes()
    signature = {"algorithm": "ed25519", "key_id": key_id(private_key.public_key()),
                 "signature": base64.b64encode(private_key.sign(content)).decode("ascii")}
    path = folder / SIGNATURE_FILE
    path.write_text(json.dumps(signature, indent=2) + "\n", encoding="utf-8")
    return path


def verify_signature(folder: str | Path, manifest: bytes) -> str | None:
    """Check ``manifest.sig`` when ``$LESIONLIB_TRUSTED_KEYS`` is set.

    Returns:
        The id of the key that signed the manifest, or ``None`` when no keys are required.

    Raises:
        IntegrityError: the signature is missing, malformed, or not from a trusted key.
    """
    from cryptography.exceptions import InvalidSignature

    keys = trusted_keys()
    if not keys:
        return None
    folder = Path(folder)
    where = f"Model folder {folder.name!r}"
    path = folder / SIGNATURE_FILE
    if not path.is_file():
        raise IntegrityError(f"{where} is not signed (no {SIGNATURE_FILE}), and "
                             f"{TRUSTED_KEYS_ENV} requires a signature by one of the keys "
                             f"{', '.join(sorted(keys))}. Refusing the model.")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        signature = base64.b64decode(record["signature"], validate=True)
        signer = str(record.get("key_id", "?"))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise IntegrityError(f"{where}: {SIGNATURE_FILE} is unreadable ({error}); expected "
                             "JSON with a base64 'signature'. Refusing the model.") from None
    for key in keys.values():
        try:
            key.verify(signature, manifest)
            return key_id(key)
        except InvalidSignature:
            continue
    raise IntegrityError(
        f"{where}: {SIGNATURE_FILE} does not verify against any trusted key (it names key "
        f"{signer}; trusted: {', '.join(sorted(keys))}). The manifest or the signature was "
        "changed, or it was signed with another key. Refusing the model.")
