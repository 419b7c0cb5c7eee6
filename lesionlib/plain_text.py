"""User-supplied text (file names, notes, usernames) shown as typed, never as Markup.

Streamlit renders ``st.markdown``, ``st.error``, captions and labels as Markdown, where
``![t](https://example.org/t.png)`` makes the browser fetch an image and ``:red[...]`` changes
colour. ``escape_markdown`` backslash-escapes every ASCII punctuation character Markdown could act
on (CommonMark allows escaping any of them), so the text reads the same and does nothing.
"""

from __future__ import annotations

import re

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>:$~=&\"'^])")


def escape_markdown(text) -> str:
    """``text`` as literal Markdown: punctuation escaped, line breaks and runs of spaces as one
    space (a line break could start a heading or a list)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
