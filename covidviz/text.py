"""Text that came from outside (file names, DICOM tags, PACS descriptions, error messages echoing them) made
safe for where it is shown: Markdown on a page, a cell in a spreadsheet.

At the bottom of the package, beside paths.py, so that the audit export and the dashboard share one
implementation without either importing the other's layer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# Characters that mean something to Streamlit's Markdown anywhere in a line: emphasis, code, links and images
# ([ ]: a "(" or "!" means nothing without them), $ (LaTeX), ~ (strikethrough), | (tables), and : before a
# word (emoji shortcodes, :red[...] colour directives). A backslash makes each literal. < > & become entities:
# a backslash would leave a raw "<img" in the element's text.
_INLINE = re.compile(r"[\\`*_\[\]$~|]|:(?=\S)")
# ...and at the start of a line only: a heading, a list item, a setext underline.
_LINE_START = re.compile(r"^(\s*)([#+\-=]|\d+(?=[.)]))")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def plain(text: object) -> str:
    """``text`` as Markdown that renders it literally: no emphasis, link, image, heading, formula or HTML.

    Line breaks become spaces, so a value cannot start a block (a list, a code fence, a table) either.
    Use it on every string a user, an upload or a remote server controls before it reaches ``st.markdown``,
    ``st.subheader``, ``st.caption``, ``st.error`` and the like. Image captions and table cells are plain
    text already and need none."""
    value = " ".join(str(text).splitlines())
    value = "".join(_ENTITIES.get(ch, ch) for ch in value)
    value = _INLINE.sub(lambda m: "\\" + m.group(0), value)
    return _LINE_START.sub(_escape_line_start, value)


def _escape_line_start(match: re.Match[str]) -> str:
    lead, mark = match.groups()
    return lead + (mark + "\\" if mark[0].isdigit() else "\\" + mark)  # "1\." and "\#"


def neutralise_formula(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (= + - @, tab, CR first) gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell neutralised against formula injection."""
    import pandas as pd
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(neutralise_formula)
    return safe


def safe_csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV for download that a spreadsheet opens without running anything a file name or message smuggled in.

    CRLF rows (RFC 4180) also make the writer quote any cell holding a lone CR, which a spreadsheet would
    otherwise read as a row break: a name "a\\r=cmd()" would start a row with a formula."""
    return spreadsheet_safe(frame).to_csv(index=False, lineterminator="\r\n").encode()


def without_folder(text: str, folder: str | Path) -> str:
    """``text`` with the server's ``folder`` (and the checkout above it) shown by name only: a message for a
    page names ``weights/eval/metrics.json``, never where the server keeps it."""
    folder = Path(folder).resolve()
    for long, short in ((str(folder), folder.name), (str(folder.parent) + "/", "")):
        text = text.replace(long, short)
    return text
