"""The dashboard's pages, one thin script each, routed by ``dashboard.py`` (``st.navigation``).

A package only so that ``lint-imports`` can check the layers pages -> app -> lesionlib; Streamlit
runs each file as a script and never imports this one.
"""
