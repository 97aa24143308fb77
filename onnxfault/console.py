"""Printing user-supplied text safely: no rich markup, control characters escaped (CLI and figures)."""
from __future__ import annotations

import re

from rich.console import Console
from rich.text import Text

# C0 and C1 control characters but newline, and the bidirectional overrides that reorder what follows
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text) -> str:
    """``text`` safe for a terminal: control characters (but newline) written as escapes, ESC as ``\\x1b``."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


class LiteralConsole(Console):
    """A console that prints every string as given: no markup (``mod[x]`` stays ``mod[x]``, ``[/x]`` is
    text), no emoji codes, no highlighting, and control characters escaped (:func:`shown`); style comes
    only from :class:`rich.text.Text` objects."""

    def __init__(self, **kwargs):
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(shown(text), **kwargs)
