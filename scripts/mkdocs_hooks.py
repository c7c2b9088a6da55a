"""MkDocs hook: render Sphinx-style roles (:func:`x`, :class:`~a.B`) left in docstrings as code."""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:func|class|meth|data|attr|mod|obj|exc|const):<code>(~?)([^<]+)</code>")


def _plain(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub(_plain, html)
