"""The README is the front page and links into docs/; the API reference covers the public names.

`mkdocs build --strict` (in scripts/test.sh) checks the links between the docs pages and that
every `::: name` of the API reference still exists. These tests check what it cannot see: the
README's links (the README is not part of the site), and that no name of `layerscope.__all__` is
missing from the reference.
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from pathlib import Path

import layerscope

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"

# [text](target) and ![alt](target); the text may span lines (the screenshot's alt text does).
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", re.S)
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.M)


def _links(markdown: str) -> list[str]:
    return _LINK.findall(_FENCE.sub("", markdown))


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (MkDocs' default slugify)."""
    text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading)  # code and emphasis marks
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M)}


def broken_links(markdown: str, base: Path) -> list[str]:
    """Relative links of `markdown` (read from a file in `base`) whose file, or whose anchor in a
    Markdown file, does not exist."""
    broken = []
    for target in _links(markdown):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # a web address, or an anchor of the README itself
        path, _, anchor = target.partition("#")
        file = (base / path).resolve()
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    return broken


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_readme_link_into_docs_resolves():
    readme = _readme()
    into_docs = [t for t in _links(readme) if t.startswith("docs/")]
    assert into_docs, "the README links to no docs page"
    assert broken_links(readme, ROOT) == []


def test_the_readme_links_to_every_docs_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _links(_readme())}
    pages = sorted(p for p in DOCS.glob("*.md") if p.resolve() not in linked)
    assert pages == [], "docs pages the README's list does not link to"


def test_a_broken_link_is_found():
    planted = "See [the guide](docs/no-such-page.md), [speed](docs/speed.md#no-such-section),\n"
    planted += "![a picture](docs/no-such-picture.png) and [home](docs/index.md#quickstart)."
    assert broken_links(planted, ROOT) == [
        "docs/no-such-page.md",
        "docs/speed.md#no-such-section",
        "docs/no-such-picture.png",
    ]


def _directives() -> dict[str, Path]:
    found = {}
    for page in sorted(API.glob("*.md")):
        for name in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            found[name] = page
    return found


def _resolve(dotted: str) -> object:
    """The object a `::: dotted.path` documents: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def test_every_public_name_is_in_the_api_reference():
    documented: dict[str, str] = {}
    for dotted in _directives():
        obj = _resolve(dotted)
        name = dotted.rsplit(".", 1)[-1]
        if name in layerscope.__all__ and obj is getattr(layerscope, name):
            documented[name] = dotted
    missing = [n for n in layerscope.__all__ if n not in documented]
    assert missing == [], "names of layerscope.__all__ with no `::: ...` entry in docs/api/"
