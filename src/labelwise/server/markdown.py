"""Project guidelines: Markdown rendered to HTML that can carry no markup of its author's.

CommonMark with tables, raw HTML off (a ``<script>`` in the guidelines shows as text), links
checked by the parser (``javascript:`` and other schemes that run code are dropped) and opened
in a new tab so that the labeling page stays where it was.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from markupsafe import Markup

__all__ = ["guidelines_version", "render_markdown"]


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.enable("strikethrough")

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("target", "_blank")
        tokens[idx].attrSet("rel", "noopener noreferrer")
        return str(renderer.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    return md


def render_markdown(text: str) -> Markup:
    """``text`` (Markdown) as HTML safe to put in a page."""
    return Markup(_parser().render(text or ""))  # the parser escaped the text


def guidelines_version(text: str) -> str:
    """A short digest of the guidelines: a page shows them again when they change."""
    return hashlib.sha256((text or "").encode()).hexdigest()[:12]
