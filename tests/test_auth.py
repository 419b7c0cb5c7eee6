"""auth: sign-in gate, roles and audit trail, driven through Streamlit's AppTest."""

from __future__ import annotations

import re
import stat

import bcrypt
import pytest
import yaml
from streamlit_authenticator import params as stauth_params
from streamlit.testing.v1 import AppTest

from app import auth
from lesionlib.feedback import FEEDBACK_URL_ENV, FeedbackStore
from lesionlib.signin_throttle import MAX_FAILURES, SignInThrottle

PASSWORDS = {"alice": "alice-Pass-1", "bob": "bob-Pass-2"}
PROBE_APP = """
import streamlit as st
from app import auth

user = auth.gate()
auth.logout_button(user)
st.write(f"SECRET-DATA for {user.username} ({user.role})")
if st.session_state.get("probe_needs_admin"):
    auth.require_admin(user, what="model administration")
    st.write("ADMIN-DATA")
"""


@pytest.fixture(autouse=True)
def no_login_pause(monkeypatch):
    """streamlit-authenticator pauses 0.7 s per run for the browser cookie; there is none here."""
    monkeypatch.setattr(stauth_params, "PRE_LOGIN_SLEEP_TIME", 0.0)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> FakeClock:
    """A fresh failed-sign-in counter per test, on a clock the test moves."""
    fake = FakeClock()
    monkeypatch.setattr(auth, "_THROTTLE", SignInThrottle(clock=fake))
    return fake


@pytest.fixture(scope="module")
def auth_config_path(tmp_path_factory):
    config = auth.make_auth_config([
        {"username": "alice", "password": PASSWORDS["alice"], "role": "admin",
         "name": "Alice Admin"},
        {"username": "bob", "password": PASSWORDS["bob"], "role": "reviewer"},
    ])
    return auth.write_auth_config(tmp_path_factory.mktemp("auth") / "auth.yaml", config)


@pytest.fixture
def feedback_url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    monkeypatch.setenv(FEEDBACK_URL_ENV, url)
    return url


@pytest.fixture
def auth_on(auth_config_path, feedback_url, monkeypatch):
    monkeypatch.setenv(auth.AUTH_CONFIG_ENV, str(auth_config_path))


def shown(markdown: str) -> str:
    """What a reader sees of escaped Markdown (user-supplied text is backslash-escaped; the
    word joiners that keep it from being a link are invisible)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def texts(app: AppTest) -> str:
    return "\n".join(element.value for element in app.markdown)


def run_probe(needs_admin: bool = False) -> AppTest:
    app = AppTest.from_string(PROBE_APP, default_timeout=30)
    app.session_state["probe_needs_admin"] = needs_admin
    app.run()
    assert not app.exception
    return app


def sign_in(app: AppTest, username: str, password: str) -> AppTest:
    app.text_input[0].input(username)
    app.text_input[1].input(password)
    next(button for button in app.button if button.label == "Sign in").click()
    app.run()
    assert not app.exception
    return app


def audit_events(url: str) -> list[tuple[str, str]]:
    store = FeedbackStore(url)
    try:
        log = store.audit_log()
        return list(zip(log["event"], log["user"]))[::-1]  # oldest first
    finally:
        store.close()


# ------------------------------------------------------------------------------ sign-in off

def test_without_config_everyone_is_the_local_user_with_both_roles(monkeypatch, feedback_url):
    monkeypatch.delenv(auth.AUTH_CONFIG_ENV, raising=False)
    app = run_probe(needs_admin=True)
    assert "SECRET-DATA for local (admin)" in texts(app)
    assert "ADMIN-DATA" in texts(app)
    assert len(app.text_input) == 0 and not app.error
    assert auth.gate() == auth.LOCAL_USER and auth.is_admin(auth.LOCAL_USER)
    assert audit_events(feedback_url) == []


# ------------------------------------------------------------------------------- sign-in on

def test_data_is_hidden_until_signed_in(auth_on):
    app = run_probe()
    assert "SECRET-DATA" not in texts(app)
    assert len(app.text_input) == 2  # username and password
    assert "Sign in" in [button.label for button in app.button]


def test_wrong_password_keeps_data_hidden_and_is_audited(auth_on, feedback_url):
    app = sign_in(run_probe(), "alice", "not-her-password")
    assert "SECRET-DATA" not in texts(app)
    assert any("incorrect" in error.value for error in app.error)
    assert audit_events(feedback_url) == [("sign-in-failed", "alice")]


def test_admin_signs_in_once_and_reaches_admin_pages(auth_on, feedback_url):
    app = sign_in(run_probe(needs_admin=True), "alice", PASSWORDS["alice"])
    assert "SECRET-DATA for alice (admin)" in texts(app)
    assert "ADMIN-DATA" in texts(app)
    app.run()  # a rerun does not record a second sign-in
    assert audit_events(feedback_url) == [("sign-in", "alice")]


def test_reviewer_cannot_pass_require_admin(auth_on, feedback_url):
    app = sign_in(run_probe(needs_admin=True), "bob", PASSWORDS["bob"])
    assert "SECRET-DATA for bob (reviewer)" in texts(app)
    assert "ADMIN-DATA" not in texts(app)
    assert any("Only administrators can use model administration" in error.value
               for error in app.error)
    assert audit_events(feedback_url) == [("sign-in", "bob"), ("denied", "bob")]


def test_sign_out_hides_the_data_and_is_recorded(auth_on, feedback_url):
    app = sign_in(run_probe(), "bob", PASSWORDS["bob"])
    assert "SECRET-DATA" in texts(app)
    app.sidebar.button(key="app_auth_sign_out").click()
    app.run()
    assert not app.exception
    assert "SECRET-DATA" not in texts(app)
    assert app.session_state["authentication_status"] is None
    app.run()  # the next rerun shows the sign-in form again
    assert "SECRET-DATA" not in texts(app) and len(app.text_input) == 2
    assert audit_events(feedback_url) == [("sign-in", "bob"), ("sign-out", "bob")]


def test_plain_text_password_in_config_locks_everyone_out(tmp_path, feedback_url, monkeypatch):
    config = auth.make_auth_config([{"username": "eve", "password": "x", "role": "admin"}])
    config["credentials"]["usernames"]["eve"]["password"] = "plain-text-password"
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv(auth.AUTH_CONFIG_ENV, str(path))
    app = run_probe()
    assert "SECRET-DATA" not in texts(app) and len(app.text_input) == 0
    assert any("not a bcrypt hash" in error.value for error in app.error)


def test_missing_config_file_locks_everyone_out(tmp_path, feedback_url, monkeypatch):
    monkeypatch.setenv(auth.AUTH_CONFIG_ENV, str(tmp_path / "nope.yaml"))
    app = run_probe()
    assert "SECRET-DATA" not in texts(app)
    assert any("cannot read" in error.value for error in app.error)
    assert not any(str(tmp_path) in error.value for error in app.error)  # no server paths


# ------------------------------------------------------------------------ failed sign-ins

def fail(app: AppTest, username: str, times: int) -> AppTest:
    for _ in range(times):
        app = sign_in(app, username, "a-wrong-guess")
    return app


def test_repeated_failures_lock_the_username_even_for_the_right_password(auth_on, feedback_url,
                                                                        clock):
    app = fail(run_probe(), "alice", MAX_FAILURES)
    assert any("locked for 15 more minutes" in error.value for error in app.error)
    app = sign_in(app, "Alice", PASSWORDS["alice"])  # any case: the same username
    assert "SECRET-DATA" not in texts(app)
    assert any("Too many failed sign-ins" in error.value for error in app.error)
    other = sign_in(run_probe(), "alice", PASSWORDS["alice"])  # a new session: still locked
    assert "SECRET-DATA" not in texts(other)
    assert sign_in(run_probe(), "bob", PASSWORDS["bob"]) is not None  # others are unaffected
    events = audit_events(feedback_url)
    assert events[:MAX_FAILURES] == [("sign-in-failed", "alice")] * MAX_FAILURES
    assert events[MAX_FAILURES:] == [("sign-in-locked", "alice")] * 3 + [("sign-in", "bob")]
    clock.now += 15 * 60 + 1  # the lock expires
    app = sign_in(run_probe(), "alice", PASSWORDS["alice"])
    assert "SECRET-DATA for alice (admin)" in texts(app)


def test_failures_of_unknown_usernames_are_counted_alike(auth_on, feedback_url):
    app = fail(run_probe(), "mallory", MAX_FAILURES)
    assert any("locked" in error.value for error in app.error)
    assert audit_events(feedback_url)[-1] == ("sign-in-locked", "mallory")


def test_a_good_sign_in_resets_the_count(auth_on, feedback_url):
    app = fail(run_probe(), "bob", MAX_FAILURES - 1)
    assert "SECRET-DATA for bob" in texts(sign_in(app, "bob", PASSWORDS["bob"]))
    assert auth.sign_in_throttle().failures("bob") == 0


def test_throttle_counts_within_its_window_only():
    clock = FakeClock()
    throttle = SignInThrottle(max_failures=3, lock_seconds=60, window_seconds=10, clock=clock)
    assert throttle.record_failure("Eve") == 0 and throttle.failures("eve") == 1
    clock.now += 11  # the first failure is now outside the window
    assert throttle.record_failure("eve") == 0 and throttle.record_failure("EVE ") == 0
    assert throttle.locked_for("eve") == 0
    assert throttle.record_failure("eve") == 60 and throttle.locked_for("Eve") == 60
    clock.now += 30
    assert throttle.locked_for("eve") == 30
    with pytest.raises(ValueError, match="max_failures must be an integer >= 1"):
        SignInThrottle(max_failures=0)


# ------------------------------------------------------------------ usernames and settings

def test_usernames_differing_only_by_case_are_refused(auth_config_path, tmp_path):
    config = yaml.safe_load(auth_config_path.read_text())
    users = config["credentials"]["usernames"]
    users["Alice"] = dict(users["bob"])
    path = tmp_path / "twins.yaml"
    path.write_text(yaml.safe_dump(config))  # sorted: 'Alice' comes first
    with pytest.raises(auth.AuthConfigError, match="'Alice' and 'alice' differ only by case"):
        auth.load_auth_config(path)


def test_twin_usernames_stop_the_app_with_a_message(auth_config_path, tmp_path, feedback_url,
                                                    monkeypatch):
    config = yaml.safe_load(auth_config_path.read_text())
    config["credentials"]["usernames"]["BOB"] = config["credentials"]["usernames"]["bob"]
    path = tmp_path / "twins.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv(auth.AUTH_CONFIG_ENV, str(path))
    app = run_probe()
    assert "SECRET-DATA" not in texts(app) and len(app.text_input) == 0
    assert any("differ only by case" in error.value for error in app.error)


def test_sign_in_is_case_insensitive(auth_on, feedback_url):
    app = sign_in(run_probe(), "  ALICE ", PASSWORDS["alice"])
    assert "SECRET-DATA for alice (admin)" in texts(app)


@pytest.mark.parametrize("content", ["credentials: [1, 2]\ncookie: {}\n", "- just\n- a list\n",
                                     "credentials: {usernames: {alice: null}}\n", "{{{{\n"])
def test_malformed_configs_are_messages_not_tracebacks(tmp_path, feedback_url, monkeypatch,
                                                       content):
    path = tmp_path / "broken.yaml"
    path.write_text(content)
    monkeypatch.setenv(auth.AUTH_CONFIG_ENV, str(path))
    app = run_probe()
    assert "SECRET-DATA" not in texts(app)
    assert any("cannot be used" in error.value and "broken.yaml" in shown(error.value)
               for error in app.error)


@pytest.mark.parametrize("url", ["not a url", "http://example.org/db", "mysql://u@h/d"])
def test_bad_feedback_url_stops_the_app_with_a_message(url, monkeypatch):
    monkeypatch.setenv(FEEDBACK_URL_ENV, url)
    monkeypatch.delenv(auth.AUTH_CONFIG_ENV, raising=False)
    app = run_probe()
    assert "SECRET-DATA" not in texts(app)
    assert any("not a database URL this app can use" in error.value for error in app.error)


def test_cookie_is_strict_and_secure_behind_https(auth_on, monkeypatch):
    monkeypatch.setattr(auth, "is_https", lambda: True)
    app = run_probe()
    manager = app.session_state[auth._AUTHENTICATOR_KEY].cookie_controller.cookie_model \
        .cookie_manager
    assert manager.set.keywords == {"secure": True, "same_site": "strict"}


# ------------------------------------------------------------------------ the config writer

def test_written_config_holds_only_bcrypt_hashes(auth_config_path):
    text = auth_config_path.read_text()
    for password in PASSWORDS.values():
        assert password not in text
    assert stat.S_IMODE(auth_config_path.stat().st_mode) == 0o600
    config = auth.load_auth_config(auth_config_path)
    users = config["credentials"]["usernames"]
    for username, password in PASSWORDS.items():
        stored = users[username]["password"]
        assert stored.startswith("$2") and bcrypt.checkpw(password.encode(), stored.encode())
    assert users["alice"]["roles"] == ["admin"] and users["bob"]["roles"] == ["reviewer"]
    assert len(config["cookie"]["key"]) >= auth.MIN_COOKIE_KEY_CHARS
    other = auth.make_auth_config([{"username": "x", "password": "y", "role": "reviewer"}])
    assert other["cookie"]["key"] != config["cookie"]["key"]  # a fresh secret each time
    with pytest.raises(FileExistsError, match="already exists"):
        auth.write_auth_config(auth_config_path, config)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["credentials"]["usernames"]["bob"].update(roles=["superuser"]),
     "'roles' set to 'reviewer' or 'admin'; received \\['superuser'\\]"),
    (lambda c: c["credentials"]["usernames"]["bob"].pop("roles"), "must have 'roles'"),
    (lambda c: c["cookie"].update(key="short"), "at least 32 characters; received 5"),
    (lambda c: c.pop("cookie"), "a 'cookie' mapping"),
    (lambda c: c["credentials"].update(usernames={}), "at least one user"),
])
def test_invalid_configs_are_refused(auth_config_path, tmp_path, change, message):
    config = yaml.safe_load(auth_config_path.read_text())
    change(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(auth.AuthConfigError, match=message):
        auth.load_auth_config(path)


def test_role_may_be_a_single_string(auth_config_path, tmp_path):
    config = yaml.safe_load(auth_config_path.read_text())
    config["credentials"]["usernames"]["bob"]["roles"] = "admin"
    path = tmp_path / "string-role.yaml"
    path.write_text(yaml.safe_dump(config))
    assert auth.load_auth_config(path)["credentials"]["usernames"]["bob"]["roles"] == "admin"


def test_command_line(tmp_path, monkeypatch, capsys):
    answers = iter(["Secret-1", "Secret-1", "Secret-2", "Secret-2", "Secret-3", "Secret-3"])
    monkeypatch.setattr(auth.getpass, "getpass", lambda prompt="": next(answers))
    assert auth.main(["hash-password"]) == 0
    printed = capsys.readouterr().out.strip()
    assert bcrypt.checkpw(b"Secret-1", printed.encode())
    path = tmp_path / "team.yaml"
    assert auth.main(["make-config", str(path), "carol:admin:Carol C", "dan:reviewer"]) == 0
    users = auth.load_auth_config(path)["credentials"]["usernames"]
    assert users["carol"]["name"] == "Carol C" and users["dan"]["roles"] == ["reviewer"]
    assert bcrypt.checkpw(b"Secret-3", users["dan"]["password"].encode())
    assert "Secret-" not in path.read_text()


def test_user_arguments_are_checked():
    with pytest.raises(ValueError, match="Expected the User returned by auth.gate"):
        auth.is_admin("alice")
    with pytest.raises(ValueError, match="role must be one of"):
        auth.make_auth_config([{"username": "x", "password": "y", "role": "boss"}])


def test_display_names_are_shown_as_text(tmp_path, feedback_url, monkeypatch):
    config = auth.make_auth_config([{"username": "eve", "password": "eve-Pass-3",
                                     "role": "reviewer",
                                     "name": "![x](https://example.org/x.png)"}])
    path = auth.write_auth_config(tmp_path / "auth.yaml", config)
    monkeypatch.setenv(auth.AUTH_CONFIG_ENV, str(path))
    app = sign_in(run_probe(), "eve", "eve-Pass-3")
    caption = next(caption.value for caption in app.sidebar.caption
                   if "Signed in as" in caption.value)
    assert "](" not in caption and "![" not in caption
    assert shown(caption) == "Signed in as **![x](https://example.org/x.png)** (reviewer)"


def test_made_up_names_never_reset_a_real_users_count():
    """After 4 failures for alice, 10,000+ failures for made-up names must not reset her count:
    her next failure still locks her. Made-up names stay bounded in memory."""
    from lesionlib import signin_throttle

    throttle = SignInThrottle(max_failures=5, lock_seconds=60, window_seconds=600,
                              clock=FakeClock())
    for _ in range(4):
        throttle.record_failure("alice", known=True)
    for index in range(signin_throttle.MAX_TRACKED_NAMES + 500):
        throttle.record_failure(f"made-up-{index}")
    assert throttle.failures("alice") == 4
    assert throttle.record_failure("alice", known=True) == 60
    assert len(throttle._records) <= signin_throttle.MAX_TRACKED_NAMES


def test_the_sign_in_wrapper_tells_the_throttle_which_names_are_configured():
    import types

    from app import auth

    model = types.SimpleNamespace(credentials={"usernames": {"Alice": {}, "bob": {}}},
                                  check_credentials=lambda username, password: False)
    authenticator = types.SimpleNamespace(authentication_controller=types.SimpleNamespace(
        authentication_model=model))
    auth._throttle_credentials(authenticator, None)
    assert model.check_credentials.keywords["known"] == frozenset({"alice", "bob"})


def test_a_key_given_twice_is_refused_at_start(auth_config_path, tmp_path):
    """PyYAML keeps the last of two equal keys: `bob: reviewer` then `bob: admin` would have
    made bob an admin without anyone seeing it."""
    text = auth_config_path.read_text()
    config = yaml.safe_load(text)
    bob = yaml.safe_dump({"bob": config["credentials"]["usernames"]["bob"]}, indent=4)
    doubled = text.replace("  usernames:\n", "  usernames:\n" + "".join(
        "    " + line + "\n" for line in bob.splitlines()), 1)
    assert yaml.safe_load(doubled) == config  # PyYAML alone accepts it silently
    path = tmp_path / "twice.yaml"
    path.write_text(doubled)
    with pytest.raises(auth.AuthConfigError, match="'bob' appears twice"):
        auth.load_auth_config(path)


@pytest.mark.parametrize("days", [".nan", ".inf", "-.inf", "100000"])
def test_an_impossible_cookie_expiry_is_refused_at_start(auth_config_path, tmp_path, days):
    config = yaml.safe_load(auth_config_path.read_text())
    text = yaml.safe_dump(config).replace(f"expiry_days: {config['cookie']['expiry_days']}",
                                          f"expiry_days: {days}")
    assert f"expiry_days: {days}" in text
    path = tmp_path / "expiry.yaml"
    path.write_text(text)
    with pytest.raises(auth.AuthConfigError, match="expiry_days' must be a number from 0"):
        auth.load_auth_config(path)


def test_a_cookie_copied_before_sign_out_no_longer_signs_in(feedback_url):
    """Sign-out revokes server-side: a remembered-sign-in token issued before bob's sign-out is
    refused (and audited); one issued after it, by a new sign-in, is accepted."""
    import time as clock

    from lesionlib.feedback import FeedbackStore

    expiry_days = 1.0
    before = {"username": "bob", "exp_date": clock.time() - 5 + expiry_days * 86_400}
    store = FeedbackStore(feedback_url)
    store.audit("sign-out", "bob")
    after = {"username": "bob", "exp_date": clock.time() + 5 + expiry_days * 86_400}
    assert auth._unrevoked_cookie(lambda: before, None, expiry_days) is None
    assert auth._unrevoked_cookie(lambda: after, None, expiry_days) == after
    other = {"username": "alice", "exp_date": before["exp_date"]}
    assert auth._unrevoked_cookie(lambda: other, None, expiry_days) == other
    assert ("sign-in-revoked", "bob") in audit_events(feedback_url)


def test_the_command_line_help_is_not_preceded_by_streamlit_warnings():
    import subprocess
    import sys

    from conftest import REPO_ROOT

    result = subprocess.run([sys.executable, "-m", "app.auth", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert (result.stderr + result.stdout).lstrip().startswith("usage:"), result.stderr[:500]
