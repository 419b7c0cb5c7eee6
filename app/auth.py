"""Optional sign-in for the dashboard, the two roles, and their audit trail (app layer).

Sign-in is off by default: everyone is the single local user ``"local"``, who holds both roles.
It is switched on by pointing the environment variable ``LESIONLIB_AUTH_CONFIG`` at a YAML file:

.. code-block:: yaml

    credentials:
      usernames:
        alice: {name: Alice Smith, password: "$2b$12$...", roles: [admin]}
        bob: {name: Bob Jones, password: "$2b$12$...", roles: [reviewer]}
    cookie: {name: lesionlib_auth, key: <random secret, 32+ characters>, expiry_days: 1}

Passwords must be bcrypt hashes (plain text is refused). Write such a file with
``python -m app.auth make-config auth.yaml alice:admin:"Alice Smith" bob:reviewer``, or hash
one password with ``python -m app.auth hash-password``.

Usernames are case-insensitive: a file listing two that differ only by case is refused.

Pages call ``user = gate()`` first, then ``logout_button(user)``, then ``require_admin(user)`` on
administrator pages. Sign-in, failed sign-ins, locks, sign-out and denied access are recorded in
the audit log of ``lesionlib.feedback.FeedbackStore``. After ``signin_throttle.MAX_FAILURES``
failed sign-ins within 15 minutes a username is locked for 15 minutes (per app server).

The remember-me cookie is set by streamlit-authenticator 0.4.2 from the browser's JavaScript
(extra-streamlit-components' CookieManager), so it cannot be ``HttpOnly``; it is signed (JWT with
the configured key), ``SameSite=Strict``, and ``Secure`` when the page was reached over HTTPS.
Set ``expiry_days: 0`` to set no cookie at all.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import getpass
import math
import logging
import os
import secrets
import sys
from pathlib import Path

import streamlit as st

if __name__ == "__main__":  # the command line: no "missing ScriptRunContext" noise before --help
    from streamlit import logger as _streamlit_logger

    _streamlit_logger.set_log_level("error")
    # a filter, not a level: Streamlit sets its loggers' levels again as its config loads
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: "missing ScriptRunContext" not in record.getMessage())

import streamlit_authenticator as stauth  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy.engine import url as sa_url

from lesionlib.feedback import FEEDBACK_URL_ENV, FeedbackStore, FeedbackStoreError
from lesionlib.plain_text import escape_markdown
from lesionlib.signin_throttle import SignInThrottle, normalise

AUTH_CONFIG_ENV = "LESIONLIB_AUTH_CONFIG"
ROLES = ("reviewer", "admin")
MIN_COOKIE_KEY_CHARS = 32
_AUTHENTICATOR_KEY = "app_auth_authenticator"  # session state: this session's Authenticate
_SIGNED_IN_KEY = "app_auth_signed_in_as"  # session state: whose sign-in was already audited
_LOCKED_KEY = "app_auth_locked_seconds"  # session state: the last attempt hit a lock (seconds)
MAX_AUDITED_NAME_CHARS = 64  # a typed username is attacker-controlled: stored truncated
_THROTTLE = SignInThrottle()  # per process: shared by every session of this server
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class User:
    """The person using the dashboard.

    Attributes:
        username: the sign-in name (``"local"`` when sign-in is off); stored with feedback.
        display_name: the name shown in the page.
        role: ``"reviewer"`` or ``"admin"``; an admin can do everything a reviewer can.
    """

    username: str
    display_name: str
    role: str


LOCAL_USER = User(username="local", display_name="Local user", role="admin")


class AuthConfigError(ValueError):
    """The sign-in configuration file is missing or invalid; the message says what to fix."""


def is_admin(user: User) -> bool:
    """Whether ``user`` may use administrator pages."""
    _check_user(user)
    return user.role == "admin"


def gate(store: FeedbackStore | None = None) -> User:
    """Return the signed-in user, or show the sign-in form and stop the page until there is one.

    With sign-in off (``LESIONLIB_AUTH_CONFIG`` unset) this returns ``LOCAL_USER`` at once. With
    sign-in on, an invalid configuration stops every page with an error (never open access).

    Args:
        store: where to record the sign-in in the audit log. Defaults to ``FeedbackStore()``,
            opened only when a sign-in is recorded.
    """
    problem = feedback_url_problem()
    if problem:
        logger.error("Refusing to start: %s", problem)
        st.error(f"The dashboard is not configured correctly: {escape_markdown(problem)}")
        st.stop()
    config_path = os.environ.get(AUTH_CONFIG_ENV, "").strip()
    if not config_path:
        return LOCAL_USER
    try:
        config = load_auth_config(config_path)
    except AuthConfigError as error:
        logger.error("Sign-in configuration %s refused: %s", config_path, error)
        st.error(f"Sign-in is switched on ({AUTH_CONFIG_ENV}) but cannot be used: "
                 f"{escape_markdown(error)} Nobody can sign in until an administrator fixes "
                 "it.")
        st.stop()
    authenticator = stauth.Authenticate(
        copy.deepcopy(config["credentials"]),  # the library marks users as logged in: a copy
        config["cookie"]["name"], config["cookie"]["key"], config["cookie"]["expiry_days"],
        auto_hash=False)
    _throttle_credentials(authenticator, store)
    _harden_cookie(authenticator)
    _refuse_signed_out_cookies(authenticator, store, config["cookie"]["expiry_days"])
    st.session_state[_AUTHENTICATOR_KEY] = authenticator
    st.session_state.pop(_LOCKED_KEY, None)
    try:
        authenticator.login(location="main", key="app_auth_login",
                            fields={"Form name": "Sign in", "Login": "Sign in"})
    except stauth.LoginError as error:  # e.g. a remembered cookie for a user since removed
        logger.warning("Sign-in refused by streamlit-authenticator: %s", error)
        st.error("Sign-in failed; sign in again with your username and password.")
    status = st.session_state.get("authentication_status")
    entry = config["credentials"]["usernames"].get(st.session_state.get("username") or "")
    locked = st.session_state.get(_LOCKED_KEY)
    if status is False and locked:
        st.error(f"Too many failed sign-ins for this username: it is locked for "
                 f"{max(1, round(locked / 60))} more minutes. Ask an administrator if you have "
                 "forgotten your password.")
    elif status is False:
        st.error("Username or password is incorrect.")
    elif status and entry is None:
        st.error("Your user is not in the sign-in configuration any more; ask an "
                 "administrator.")
    if not status or entry is None:
        st.info("Sign in to use the lesion review dashboard.")
        st.stop()
    username = st.session_state["username"]
    user = User(username=username, display_name=entry.get("name") or username,
                role=_role_of(entry))
    _record_sign_in(user, store)
    return user


def feedback_url_problem() -> str | None:
    """What is wrong with ``$LESIONLIB_FEEDBACK_URL`` as a database URL (``None``: nothing).

    Only its form is checked here, on every run; whether the database answers is reported
    where feedback is read or written.
    """
    url = os.environ.get(FEEDBACK_URL_ENV, "").strip()
    if not url:
        return None
    try:
        backend = sa_url.make_url(url).get_backend_name()
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError
        backend = None
    if backend in ("sqlite", "postgresql"):
        return None
    scheme = url.split(":", 1)[0][:40]
    return (f"{FEEDBACK_URL_ENV} is not a database URL this app can use (received a URL "
            f"starting {scheme!r}); expected 'sqlite:///path/feedback.db' or "
            "'postgresql+psycopg://user:password@host/database'.")


def sign_in_throttle() -> SignInThrottle:
    """The failed sign-in counter of this process (shared by all sessions)."""
    return _THROTTLE


def _throttle_credentials(authenticator, store: FeedbackStore | None) -> None:
    """Make this session's authenticator refuse locked usernames and count failures.

    streamlit-authenticator 0.4.2 checks a typed username and password in
    ``AuthenticationModel.check_credentials``; its own ``max_login_attempts`` counts in the
    credentials dict, which is copied afresh each run, so it never locks. This instance's
    method is wrapped instead (the library itself is not modified).
    """
    model = authenticator.authentication_controller.authentication_model
    known = frozenset(normalise(name) for name in
                      (getattr(model, "credentials", None) or {}).get("usernames", {}))
    model.check_credentials = functools.partial(_checked_credentials, model.check_credentials,
                                                store, known=known)


def _checked_credentials(check, store: FeedbackStore | None, username: str,
                         password: str, known: frozenset = frozenset()) -> bool:
    throttle = sign_in_throttle()
    name = str(username or "")[:MAX_AUDITED_NAME_CHARS]
    remaining = throttle.locked_for(username)
    if remaining:
        st.session_state[_LOCKED_KEY] = remaining
        _audit(store, "sign-in-locked", name, "attempt refused: the username is locked "
               f"for {remaining / 60:.0f} more minutes; password not checked")
        return False
    if check(username, password):
        throttle.record_success(username)
        return True
    failures = throttle.failures(username) + 1
    locked = throttle.record_failure(username, known=normalise(username) in known)
    _audit(store, "sign-in-failed", name, f"failure {failures} of {throttle.max_failures}")
    if locked:
        st.session_state[_LOCKED_KEY] = locked
        _audit(store, "sign-in-locked", name, f"locked for {locked / 60:.0f} minutes after "
               f"{throttle.max_failures} failed sign-ins")
    return False


def _harden_cookie(authenticator) -> None:
    """Set the remember-me cookie ``SameSite=Strict``, and ``Secure`` over HTTPS.

    HttpOnly is impossible: the library writes the cookie from JavaScript.
    """
    manager = authenticator.cookie_controller.cookie_model.cookie_manager
    if not isinstance(manager.set, functools.partial):
        manager.set = functools.partial(manager.set, secure=is_https(), same_site="strict")


def _refuse_signed_out_cookies(authenticator, store: FeedbackStore | None,
                               expiry_days: float) -> None:
    """Sign-out revokes the remember-me cookie on the server, not only in the browser.

    The cookie is a signed token of the username and its expiry, valid until then wherever it is
    replayed. It was issued ``expiry_days`` before its expiry; a cookie issued before that user's
    last sign-out (from the audit log, so shared by every server process and kept across
    restarts) is refused and the refusal audited.
    """
    model = authenticator.cookie_controller.cookie_model
    if isinstance(model.get_cookie, functools.partial):
        return
    model.get_cookie = functools.partial(_unrevoked_cookie, model.get_cookie, store,
                                         float(expiry_days))


def _unrevoked_cookie(get_cookie, store: FeedbackStore | None, expiry_days: float):
    token = get_cookie()
    if not isinstance(token, dict) or "username" not in token or "exp_date" not in token:
        return token
    issued = float(token["exp_date"]) - expiry_days * 86_400
    owned = store is None
    try:
        store = store or FeedbackStore()
        signed_out = store.last_event_at("sign-out", str(token["username"]))
    except FeedbackStoreError as error:
        logger.error("Remembered sign-in refused: the audit log cannot be read (%s)", error)
        return None  # cannot tell whether it was revoked: ask for the password
    finally:
        if owned and store is not None:
            store.close()
    if signed_out is not None and signed_out.timestamp() >= issued:
        name = str(token["username"])[:MAX_AUDITED_NAME_CHARS]
        _audit(store if not owned else None, "sign-in-revoked", name,
               "remembered sign-in refused: the cookie was issued before this user signed out")
        return None
    return token


def is_https() -> bool:
    """Whether this page was reached over HTTPS (directly or through a TLS proxy)."""
    try:
        url = str(st.context.url or "")
        forwarded = str(st.context.headers.get("X-Forwarded-Proto", ""))
    except Exception:  # noqa: BLE001 - no request context (bare mode, tests)
        return False
    return url.lower().startswith("https://") or forwarded.lower().split(",")[0].strip() == \
        "https"


def require_admin(user: User, store: FeedbackStore | None = None,
                  what: str = "this page") -> None:
    """Stop the page with an error unless ``user`` is an admin; record a refusal as 'denied'.

    Args:
        user: from ``gate()``.
        store: where to record the refusal. Defaults to ``FeedbackStore()``.
        what: what was refused, for the message and the audit log, e.g. ``"model management"``.
    """
    if is_admin(user):
        return
    _audit(store, "denied", user.username, what)
    st.error(f"Only administrators can use {what}. You are signed in as "
             f"{escape_markdown(user.username)} with the {user.role!r} role; ask an "
             "administrator for access.")
    st.stop()


def logout_button(user: User, store: FeedbackStore | None = None) -> None:
    """Show who is signed in and a 'Sign out' button in the sidebar (nothing when sign-in is off).

    Call it right after ``gate()``: signing out stops the page there, so nothing after it shows.
    """
    _check_user(user)
    authenticator = st.session_state.get(_AUTHENTICATOR_KEY)
    if authenticator is None or not os.environ.get(AUTH_CONFIG_ENV, "").strip():
        return
    st.sidebar.caption(f"Signed in as **{escape_markdown(user.display_name)}** ({user.role})")
    if not st.sidebar.button("Sign out", key="app_auth_sign_out"):
        return
    _audit(store, "sign-out", user.username)
    authenticator.logout(location="unrendered")  # clears the session and the browser cookie
    st.session_state.pop(_SIGNED_IN_KEY, None)
    st.success("You have signed out.")
    st.button("Sign in again", key="app_auth_sign_in_again")  # any click reruns into gate()
    st.stop()


def load_auth_config(path: str | Path) -> dict:
    """Read and check a sign-in configuration file.

    Returns:
        The configuration, with usernames in lower case (as streamlit-authenticator keys them).

    Raises:
        AuthConfigError: the file is missing, is not YAML, or a user or cookie entry is invalid.
    """
    path = Path(path).expanduser()
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except OSError as error:
        raise AuthConfigError(f"cannot read {path.name} ({error.strerror or error}).") from None
    except yaml.YAMLError as error:
        raise AuthConfigError(f"{path.name} is not valid YAML ({error}).") from None
    if not isinstance(config, dict):
        raise AuthConfigError(f"{path.name} must hold a mapping with 'credentials' and "
                              f"'cookie'; received {type(config).__name__}.")
    credentials = config.get("credentials")
    users = credentials.get("usernames") if isinstance(credentials, dict) else None
    if not isinstance(users, dict) or not users:
        raise AuthConfigError(f"{path.name}: 'credentials: usernames:' must list at least one "
                              "user.")
    _refuse_names_differing_by_case(path, users)
    config["credentials"] = {"usernames": {str(name).strip().lower(): _checked_user(
        path, str(name), entry) for name, entry in users.items()}}
    config["cookie"] = _checked_cookie(path, config.get("cookie"))
    return config


def _refuse_names_differing_by_case(path: Path, users: dict) -> None:
    """Usernames are case-insensitive, so 'Alice' and 'alice' would be one account."""
    seen: dict[str, str] = {}
    for name in users:
        key = normalise(name)
        if not key:
            raise AuthConfigError(f"{path.name}: a username is empty.")
        if key in seen:
            raise AuthConfigError(f"{path.name}: usernames {seen[key]!r} and {str(name)!r} "
                                  "differ only by case or spaces; usernames are "
                                  "case-insensitive, so keep one of them.")
        seen[key] = str(name)


def _checked_user(path: Path, username: str, entry) -> dict:
    if not isinstance(entry, dict):
        raise AuthConfigError(f"{path.name}: user {username!r} must be a mapping with 'name', "
                              "'password' and 'roles'.")
    password = entry.get("password")
    if not isinstance(password, str) or not stauth.Hasher.is_hash(password):
        raise AuthConfigError(
            f"{path.name}: the password of user {username!r} is not a bcrypt hash; plain-text "
            "passwords are refused. Hash it with 'python -m app.auth hash-password' or write "
            "the file with 'python -m app.auth make-config'.")
    _role_of(entry, path, username)
    return dict(entry)


def _role_of(entry: dict, path: Path | None = None, username: str = "") -> str:
    roles = entry.get("roles")
    roles = [roles] if isinstance(roles, str) else roles
    if not isinstance(roles, list) or not roles or any(role not in ROLES for role in roles):
        where = path.name if path is not None else "sign-in configuration"
        raise AuthConfigError(f"{where}: user {username!r} must have 'roles' set to "
                              f"'reviewer' or 'admin'; received {entry.get('roles')!r}.")
    return "admin" if "admin" in roles else "reviewer"


MAX_EXPIRY_DAYS = 365


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the
    last silently: ``bob: reviewer`` then ``bob: admin`` would make bob an admin)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping (line "
                    f"{key_node.start_mark.line + 1}); give each key once", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _checked_cookie(path: Path, cookie) -> dict:
    if not isinstance(cookie, dict):
        raise AuthConfigError(f"{path.name}: a 'cookie' mapping with 'name', 'key' and "
                              "'expiry_days' is required.")
    key, name, days = cookie.get("key"), cookie.get("name"), cookie.get("expiry_days", 1)
    if not isinstance(key, str) or len(key) < MIN_COOKIE_KEY_CHARS:
        raise AuthConfigError(f"{path.name}: cookie 'key' must be a random secret of at least "
                              f"{MIN_COOKIE_KEY_CHARS} characters; received "
                              f"{len(key) if isinstance(key, str) else type(key).__name__}"
                              f"{' characters' if isinstance(key, str) else ''}.")
    if not isinstance(name, str) or not name.strip():
        raise AuthConfigError(f"{path.name}: cookie 'name' must be a non-empty string.")
    if isinstance(days, bool) or not isinstance(days, (int, float)) or \
            not math.isfinite(days) or not 0 <= days <= MAX_EXPIRY_DAYS:
        raise AuthConfigError(f"{path.name}: cookie 'expiry_days' must be a number from 0 to "
                              f"{MAX_EXPIRY_DAYS} (0 means no remembered sign-in); received "
                              f"{days!r}.")
    return {"name": name, "key": key, "expiry_days": float(days)}


def hash_password(password: str) -> str:
    """The bcrypt hash of ``password``, as the configuration file stores it."""
    if not isinstance(password, str) or not password:
        raise ValueError("The password must be a non-empty string.")
    return stauth.Hasher.hash(password)


def make_auth_config(users: list[dict], cookie_name: str = "lesionlib_auth",
                     expiry_days: float = 1.0) -> dict:
    """Build a sign-in configuration with hashed passwords and a fresh random cookie key.

    Args:
        users: one mapping per user with ``username``, ``password`` (plain text, hashed here),
            ``role`` (``"reviewer"`` or ``"admin"``) and optionally ``name`` and ``email``.
        cookie_name: name of the remember-me cookie.
        expiry_days: how long a sign-in is remembered; ``0`` to ask every session.
    """
    entries = {}
    for user in users:
        username = str(user.get("username", "")).strip().lower()
        if not username:
            raise ValueError(f"Each user needs a username; received {user.get('username')!r}.")
        if user.get("role") not in ROLES:
            raise ValueError(f"User {username!r}: role must be one of {ROLES}; received "
                             f"{user.get('role')!r}.")
        entries[username] = {"name": user.get("name") or username,
                             "email": user.get("email") or f"{username}@localhost",
                             "password": hash_password(user.get("password")),
                             "roles": [user["role"]]}
    return {"credentials": {"usernames": entries},
            "cookie": {"name": cookie_name, "key": secrets.token_urlsafe(48),
                       "expiry_days": float(expiry_days)}}


def write_auth_config(path: str | Path, config: dict, overwrite: bool = False) -> Path:
    """Write ``config`` as YAML readable only by its owner, after checking it loads back."""
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to "
                              "replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    os.chmod(path, 0o600)
    load_auth_config(path)
    return path


def _record_sign_in(user: User, store: FeedbackStore | None) -> None:
    if st.session_state.get(_SIGNED_IN_KEY) == user.username:
        return
    if _audit(store, "sign-in", user.username, f"role {user.role}"):
        st.session_state[_SIGNED_IN_KEY] = user.username


def _audit(store: FeedbackStore | None, event: str, username: str, detail: str = "") -> bool:
    """Record an audit event; on a database failure warn in the page (never silently skip)."""
    owned = store is None
    try:
        store = store or FeedbackStore()
        store.audit(event, username, detail)
        return True
    except (FeedbackStoreError, ValueError) as error:
        logger.error("Audit event %r for %r not written: %s", event, username, error)
        st.warning(f"The '{event}' event could not be written to the audit log; an "
                   "administrator can see why in the server log.")
        return False
    finally:
        if owned and store is not None:
            store.close()


def _check_user(user) -> None:
    if not isinstance(user, User):
        raise ValueError(f"Expected the User returned by auth.gate(); received "
                         f"{type(user).__name__}.")


def _parse_user(text: str) -> dict:
    parts = text.split(":", 2)
    if len(parts) < 2 or parts[1] not in ROLES:
        raise argparse.ArgumentTypeError(f"expected USERNAME:ROLE[:DISPLAY NAME] with ROLE one "
                                         f"of {ROLES}; received {text!r}")
    return {"username": parts[0], "role": parts[1], "name": parts[2] if len(parts) > 2 else ""}


def _ask_password(prompt: str) -> str:
    password = getpass.getpass(prompt)
    if password != getpass.getpass("Repeat it: "):
        raise SystemExit("The two passwords differ; nothing was written.")
    if not password:
        raise SystemExit("An empty password is not allowed; nothing was written.")
    return password


def main(argv: list[str] | None = None) -> int:
    """Command line: ``hash-password`` or ``make-config PATH USER:ROLE[:NAME]...``."""
    parser = argparse.ArgumentParser(prog="python -m app.auth", description=__doc__.split(
        "\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("hash-password", help="print the bcrypt hash of a password")
    make = commands.add_parser("make-config", help="write a sign-in configuration file, "
                               "asking for each user's password")
    make.add_argument("path", type=Path)
    make.add_argument("users", nargs="+", type=_parse_user, metavar="USER:ROLE[:NAME]")
    make.add_argument("--expiry-days", type=float, default=1.0)
    make.add_argument("--overwrite", action="store_true")
    arguments = parser.parse_args(argv)
    if arguments.command == "hash-password":
        print(hash_password(_ask_password("Password: ")))
        return 0
    for user in arguments.users:
        user["password"] = _ask_password(f"Password for {user['username']}: ")
    path = write_auth_config(arguments.path, make_auth_config(
        arguments.users, expiry_days=arguments.expiry_days), overwrite=arguments.overwrite)
    print(f"Wrote {path} ({len(arguments.users)} users). Start the app with "
          f"{AUTH_CONFIG_ENV}={path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
