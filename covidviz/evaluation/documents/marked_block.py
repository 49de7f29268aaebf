"""A generated block of a Markdown file between two HTML-comment markers: found and rewritten the one way, for
every block a command keeps up to date (the README's facts and its model comparison)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MarkedBlock:
    begin: str
    end: str

    @property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.begin) + r".*?" + re.escape(self.end), re.S)

    def current(self, text: str) -> str:
        """The block as ``text`` holds it, markers included; ValueError if the markers are missing."""
        match = self._pattern.search(text)
        if not match:
            raise ValueError(f"no generated block ({self.begin} ... {self.end}) found")
        return match.group(0)

    def replace(self, text: str, block: str) -> str:
        """``text`` with its block replaced by ``block``; ValueError if the markers are missing."""
        self.current(text)
        return self._pattern.sub(lambda _: block, text, count=1)
