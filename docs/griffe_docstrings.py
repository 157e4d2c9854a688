"""A griffe extension (mkdocs.yml: mkdocstrings, python, options, extensions) that makes
LayerScope's docstrings read right as Markdown in the API reference, without editing them:

- doctest lines (``>>> x`` and their output) become ``pycon`` code blocks (Markdown would read
  ``>>>`` as three nested quotes);
- Sphinx roles (``:class:`Capturer```, ``:func:`~layerscope.intervene```) become code, linked to
  the object's entry where the reference has one (an optional cross-reference: a name the
  reference does not document stays plain code, never a broken link).

Not part of the site (mkdocs.yml excludes it from docs_dir's files).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|attr|exc|obj|data|const):`(~?)([\w.]+)(?:\(\))?`"
)


def _doctests_fenced(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            fence = not fence
        if fence or not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():  # the block ends at a blank line
            out.append(lines[i])
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class SphinxToMarkdown(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.is_alias or obj.docstring is None:
            return
        docstring = obj.docstring

        def role(match: re.Match[str]) -> str:
            short, name = match.group(1), match.group(2)
            shown = name.rsplit(".", 1)[-1] if short else name
            try:
                target = obj.resolve(name) if "." not in name else name
            except Exception:  # a name griffe cannot place: plain code
                return f"`{shown}`"
            return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'

        docstring.value = _ROLE.sub(role, _doctests_fenced(docstring.value))
