"""User-supplied text (file names, notes, usernames) shown as typed, never as Markup.

Streamlit renders ``st.markdown``, ``st.error``, captions and labels as Markdown, where
``![t](https://example.org/t.png)`` makes the browser fetch an image and ``:red[...]`` changes
colour. ``escape_markdown`` backslash-escapes every ASCII punctuation character Markdown could act
on (CommonMark allows escaping any of them), so the text reads the same and does nothing.
"""

from __future__ import annotations

import os
import re

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>:$~=&\"'^])")


_WORD_JOINER = "\u2060"  # invisible; splits what GFM would auto-link
_AUTOLINK_TRIGGERS = re.compile(r"(:)(?=//)|(?<=www)(\\?\.)|(@)", re.IGNORECASE)


def escape_markdown(text) -> str:
    """``text`` as literal Markdown: punctuation escaped, line breaks and runs of spaces as one
    space (a line break could start a heading or a list), and never a link: Streamlit's Markdown
    auto-links ``https://...``, ``www.`` names and e-mail addresses even when escaped, so an
    invisible word joiner splits ``://``, ``www.`` and ``@``."""
    escaped = _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
    return _AUTOLINK_TRIGGERS.sub(
        lambda match: "".join(group for group in match.groups() if group) + _WORD_JOINER
        if match.group(1) or match.group(3) else _WORD_JOINER + match.group(2), escaped)


def printable_name(name) -> str:
    """A file name as text that any UTF-8 file or page can hold: bytes that are not UTF-8 (kept
    by Python as surrogates, e.g. ``img_25\\xff.jpg`` on Linux) become ``\\xNN``; line breaks
    and tabs become ``\\n``, ``\\r``, ``\\t``, so one name is always one line."""
    text = str(name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text) -> str:
    """``printable_name`` of ``text``, with a leading ``'`` where a spreadsheet would read the
    cell as a formula (``=HYPERLINK(...)``, ``@SUM(1)``): OWASP's CSV-injection defence."""
    text = printable_name(text)
    return "'" + text if text[:1] in FORMULA_PREFIXES else text


def literal(text) -> str:
    """User-supplied text as inline code for Markdown: never a link (Streamlit's Markdown
    auto-links ``https://...`` and ``www.`` even when escaped), never formatting."""
    text = " ".join(printable_name(text).split()).replace("`", "'")
    return f"`{text}`" if text else "``"
