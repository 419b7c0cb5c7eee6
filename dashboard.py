"""Entry point: ``streamlit run dashboard.py``. Signs the user in, then routes to the pages.

Pages are listed explicitly (``st.navigation`` disables automatic ``pages/`` discovery). Every
page shares the sidebar notice drawn here. Logic lives in ``lesionlib``; cached resources in
``app.resources``; shared drawing helpers in ``app.ui``.
"""

import streamlit as st

from app import auth, server_runtime, ui
from lesionlib import server_logging

server_logging.install()  # a browser dropping an upload is one log line, not a traceback
server_runtime.install()  # no Keras clear_session after every run: the models are shared

st.set_page_config(page_title="Skin-lesion review", page_icon=":material/biotech:",
                   layout="wide")

PAGES = {
    "Review": [
        st.Page("pages/case_review.py", title="Case review", icon=":material/search:",
                default=True),
        st.Page("pages/compare.py", title="Compare models", icon=":material/compare:"),
        st.Page("pages/feedback.py", title="Reviewer feedback", icon=":material/rate_review:"),
    ],
    "Learn and audit": [
        st.Page("pages/explorer.py", title="Dataset explorer", icon=":material/bar_chart:"),
        st.Page("pages/teaching.py", title="Teaching quiz", icon=":material/school:"),
        st.Page("pages/reader_study.py", title="Reader study", icon=":material/groups:"),
        st.Page("pages/audit.py", title="Performance and error audit",
                icon=":material/fact_check:"),
        st.Page("pages/models.py", title="Models", icon=":material/description:"),
    ],
}

# st.navigation must run on EVERY run, before the sign-in gate: a run that stops without calling
# it makes Streamlit fall back to discovering pages/ and serve /audit, /feedback... directly,
# without the gate. The menu stays hidden until the user is signed in.
navigation = st.navigation(PAGES, position="sidebar" if ui.may_show_menu() else "hidden")
user = auth.gate()  # stops here until signed in (the local user when sign-in is off)
auth.logout_button(user)
st.session_state["user"] = user
ui.follow_deep_link()  # a page asked for before this script first ran (a fresh server)
ui.sidebar_notice()
ui.run_page(navigation)  # an unexpected error: a short notice here, the details in the log
