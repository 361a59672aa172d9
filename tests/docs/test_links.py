"""Relative links of README.md and docs/*.md point at files that exist, and at headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.markdown import DOC_FILES, REPO

#: Pages other engineers are writing; links to them are checked once they exist.
PENDING = frozenset({Path("docs/reliability.md"), Path("docs/security.md"), Path("docs/bad-input.md")})

_FENCED = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def _prose(path: Path) -> str:
    """The page without code blocks and code spans (whose brackets are not links)."""
    text = (REPO / path).read_text(encoding="utf-8")
    return _CODE_SPAN.sub("", _FENCED.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a page, with GitHub's ``-1``, ``-2`` suffixes for repeated headings."""
    text = _FENCED.sub("", (REPO / path).read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in _HEADING.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def _links() -> list[tuple[Path, str]]:
    return [(path, target) for path in DOC_FILES for target in _LINK.findall(_prose(path))]


LINKS = [(path, target) for path, target in _links() if not re.match(r"^[a-z]+:", target)]


def test_slugs_follow_github() -> None:
    assert slug("The token's budget") == "the-tokens-budget"
    assert slug("Exporting the audit log: `AsanaAuditLogExportOperator`") == (
        "exporting-the-audit-log-asanaauditlogexportoperator"
    )
    assert slug("Airflow 2.11 and Airflow 3") == "airflow-211-and-airflow-3"


def test_the_pages_link_to_each_other() -> None:
    assert len(LINKS) > 50


@pytest.mark.parametrize(("page", "target"), LINKS, ids=[f"{page}->{target}" for page, target in LINKS])
def test_relative_link_resolves(page: Path, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    linked = (page.parent / file_part) if file_part else page
    linked = Path((REPO / linked).resolve().relative_to(REPO))
    if linked in PENDING and not (REPO / linked).exists():
        pytest.skip(f"{linked} is being written")
    assert (REPO / linked).exists(), f"{page} links to {target}, which does not exist"
    if anchor:
        assert linked.suffix == ".md", f"{page}: an anchor into {linked}"
        assert anchor in anchors(linked), f"{page} links to #{anchor}, not a heading of {linked}"
