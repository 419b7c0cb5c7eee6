"""The dashboard's Streamlit helpers, between the pages and the library.

``pages/`` imports ``app``; ``app`` imports ``lesionlib``; ``lesionlib`` never imports either
(checked by ``lint-imports``, see ``.importlinter``). ``resources`` holds every cached resource,
``ui`` the shared drawing helpers, ``auth`` sign-in and roles, and one ``*_panels`` module per
page family (audit, faithfulness, retraining, teaching).
"""
