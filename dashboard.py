"""Entry point: ``streamlit run dashboard.py``. Signs the user in, then routes to the pages.

Pages are listed explicitly (``st.navigation`` disables automatic ``pages/`` discovery). Every
page shares the sidebar notice drawn here. Logic lives in ``lesionlib``; cached resources in
``app_resources``; shared drawing helpers in ``app_ui``.
"""

import streamlit as st

import app_ui

try:
    import app_auth
except ImportError:  # TEMPORARY until app_auth.py lands: a local user with both roles
    class app_auth:  # noqa: N801
        gate = staticmethod(lambda: {"username": "local", "roles": ["reviewer", "admin"]})
        logout_button = staticmethod(lambda user: None)
        is_admin = staticmethod(lambda user: True)

st.set_page_config(page_title="Skin-lesion review", page_icon=":material/biotech:", layout="wide")

user = app_auth.gate()
st.session_state["user"] = user

pages = {
    "Review": [
        st.Page("pages/case_review.py", title="Case review", icon=":material/search:", default=True),
        st.Page("pages/compare.py", title="Compare models", icon=":material/compare:"),
        st.Page("pages/feedback.py", title="Reviewer feedback", icon=":material/rate_review:"),
    ],
    "Learn and audit": [
        st.Page("pages/explorer.py", title="Dataset explorer", icon=":material/bar_chart:"),
        st.Page("pages/audit.py", title="Performance and error audit", icon=":material/fact_check:"),
        st.Page("pages/models.py", title="Models", icon=":material/description:"),
    ],
}
navigation = st.navigation(pages)
app_ui.sidebar_notice()
app_auth.logout_button(user)
navigation.run()
