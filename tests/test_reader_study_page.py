"""The Reader study page through AppTest on the tiny weights: an admin creates a study, two
readers complete it in their own sessions, the results show both; before the end, nothing a
reader sees names a case's reference diagnosis."""

from __future__ import annotations

import pandas as pd
import pyarrow
import pytest
from streamlit.testing.v1 import AppTest

from conftest import REPO_ROOT
from test_pages import assert_ok, open_page, texts

pytestmark = pytest.mark.slow

from test_pages import app_env, no_dataset, page_weights  # noqa: E402,F401

SAMPLES = pd.read_csv(REPO_ROOT / "sample_images" / "labels.csv")


def as_user(monkeypatch, username: str, role: str) -> None:
    from app import auth

    user = auth.User(username=username, display_name=username.title(), role=role)
    monkeypatch.setattr(auth, "gate", lambda store=None: user)


def everything_shown(app: AppTest) -> str:
    parts = [texts(app)]
    parts += [str(caption) for image in app.image for caption in image.captions]
    parts += [str(getattr(widget, "label", "")) + str(getattr(widget, "help", ""))
              for kind in ("radio", "button", "selectbox", "text_input", "toggle")
              for widget in getattr(app, kind)]
    return "\n".join(parts)


def create_study(app: AppTest, name: str, count: int, forms: list[str]) -> None:
    app.radio(key="reader_study_section").set_value("Create a study").run()
    assert_ok(app)
    app.text_input(key="reader_study_new_name").input(name)
    app.number_input(key="reader_study_count").set_value(count)
    app.multiselect(key="reader_study_forms").set_value(forms)
    app.number_input(key="reader_study_seed").set_value(11)
    app.checkbox(key="reader_study_ask_confidence").uncheck()
    next(button for button in app.button if button.label == "Create the study").click()
    app.run()
    assert_ok(app)
    assert any(f"Study **{name}** created" in success.value for success in app.success), \
        texts(app)


def commit(app: AppTest, label: str, answer: str = "nv", management: str = "follow up"):
    for radio in app.radio:
        if radio.label == "Your diagnosis":
            radio.set_value(answer)
        elif radio.label == "Your management decision":
            radio.set_value(management)
    next(button for button in app.button if button.label == label).click()
    app.run()
    assert_ok(app)


def take_part(app: AppTest, name: str, experience: str, cases: int, answer: str) -> list[str]:
    """Join, give the experience level, read every case; returns what was shown per case."""
    app.text_input(key="reader_study_join_name").input(name)
    next(button for button in app.button if button.label == "Join the study").click()
    app.run()
    app.radio(key="reader_study_experience").set_value(experience)
    next(button for button in app.button if button.label == "Save my experience level").click()
    app.run()
    assert_ok(app)
    seen = []
    for position in range(cases):
        content = everything_shown(app)
        assert f"Case {position + 1} of {cases}" in content, content
        seen.append(content)
        commit(app, "Commit my answer", answer)
        if any(button.label == "Commit my final answer" for button in app.button):
            seen.append(everything_shown(app))
            commit(app, "Commit my final answer", answer, "excise")
    return seen


def test_a_study_from_creation_to_two_readers_results(no_dataset, monkeypatch):
    as_user(monkeypatch, "alice", "admin")
    admin = open_page("reader_study")
    assert_ok(admin)
    create_study(admin, "Pilot study", 3, ["none", "probabilities"])

    shown = {}
    for reader, experience, answer in (("bob", "student", "nv"), ("carol", "dermatologist",
                                                                    "mel")):
        as_user(monkeypatch, reader, "reviewer")
        app = open_page("reader_study")
        assert [option for option in app.radio(key="reader_study_section").options] == \
            ["Take part"]  # no results or creation for a reviewer
        shown[reader] = take_part(app, "pilot study", experience, 3, answer)
        assert any("You have completed all 3 cases" in success.value
                   for success in app.success)
        assert "reader before AI" in " ".join(str(frame.value.columns.tolist())
                                               for frame in app.dataframe)
        assert not app.get("download_button")  # readers do not export

    # before the end, no reader saw a file name, an image id or a reference diagnosis as such
    for content in shown["bob"] + shown["carol"]:
        assert "ISIC_" not in content and ".jpg" not in content
        assert "Reference" not in content and "reference diagnosis" not in content.replace(
            "The reference diagnoses are shown only at the end", "")
    assert any("AI support from" in content for content in shown["bob"] + shown["carol"])

    as_user(monkeypatch, "alice", "admin")
    admin = open_page("reader_study")
    admin.radio(key="reader_study_section").set_value("Results").run()
    assert_ok(admin)
    summary = texts(admin)
    assert "2 readers completed 6 case readings of 3 cases" in summary
    overall, _, _, experience = (frame.value for frame in admin.dataframe[:4])
    assert overall["readers"].tolist() == [2, 2, 2]
    assert set(experience["group"]) == {"student", "dermatologist"}
    switches = next(frame.value for frame in admin.dataframe
                    if "ended on the wrong AI answer" in frame.value.columns)
    none_row = switches[switches["support"] == "none"].iloc[0]
    assert none_row["ended on the wrong AI answer"] == "— (AI not shown)"
    assert admin.get("download_button")


def test_the_switch_table_converts_to_arrow_without_streamlit_fixing_it():
    """Streamlit logs a traceback and rewrites a column that mixes numbers and text."""
    from app import reader_study_panels

    switches = pd.DataFrame({"support_form": ["none", "probabilities"], "answers": [4, 4],
                             "ai_wrong": [1, 2], "followed_wrong_ai": [None, 1.0],
                             "switched_to_wrong_ai": [None, 0.0]})
    shown = reader_study_panels._switch_table(switches)
    pyarrow.Table.from_pandas(shown)
    assert shown["followed_wrong_ai"].tolist() == ["— (AI not shown)", "1"]
    assert shown["switched_to_wrong_ai"].tolist() == ["— (AI not shown)", "0"]


def test_a_reader_without_a_study_name_gets_a_message(no_dataset, monkeypatch):
    as_user(monkeypatch, "bob", "reviewer")
    app = open_page("reader_study")
    app.text_input(key="reader_study_join_name").input("no such study")
    next(button for button in app.button if button.label == "Join the study").click()
    app.run()
    assert_ok(app)
    assert any("No study of that name" in error.value for error in app.error)
