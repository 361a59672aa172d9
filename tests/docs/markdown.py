"""
The documentation as the tests see it: the fenced code blocks and the parameter lists of README.md
and docs/*.md.

A block may be preceded, on the line just before its opening fence, by one directive comment:

- ``<!-- not run: <why> -->``: not executed here (a ``python`` block is still compiled);
- ``<!-- run on: Airflow 3 -->`` or ``<!-- run on: Airflow 2 -->``: executed on that major version only;
- ``<!-- run by: <test file> -->``: executed by that test file rather than the generic one.

A parameter list starts with ``<!-- parameters: <dotted path> -->`` and holds one item per parameter:
``- **`name`** (`type`, default `value`, templated): meaning``, or ``required`` instead of the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DOC_FILES",
    "REPO",
    "Block",
    "DocParameter",
    "ParameterList",
    "blocks",
    "parameter_lists",
]

#: The repository's root.
REPO = Path(__file__).resolve().parents[2]
#: Every documentation page the tests read, relative to the root.
DOC_FILES: tuple[Path, ...] = (
    Path("README.md"),
    *sorted(p.relative_to(REPO) for p in (REPO / "docs").glob("*.md")),
)

_FENCE = re.compile(r"^(?P<fence>```+|~~~+)[ \t]*(?P<language>[\w+-]*)[ \t]*$")
_DIRECTIVE = re.compile(r"^<!--\s*(?P<kind>not run|run on|run by)\s*:\s*(?P<argument>.*?)\s*-->\s*$")
_PARAMETERS = re.compile(r"^<!--\s*parameters:\s*(?P<path>[\w.]+)\s*-->\s*$")
_ITEM = re.compile(
    r"^- \*\*`(?P<name>\w+)`\*\* \(`(?P<type>[^`]+)`, "
    r"(?:(?P<required>required)|default `(?P<default>[^`]+)`)(?P<templated>, templated)?\):"
)


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    #: The page, relative to the repository's root.
    path: Path
    #: The 1-based line of the opening fence.
    line: int
    language: str
    code: str
    #: ``"not run"``, ``"run on"``, ``"run by"`` or ``None``.
    directive: str | None
    #: What follows the directive's colon.
    argument: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class DocParameter:
    """One item of a parameter list."""

    name: str
    type: str
    #: The default as written (Python source), or ``None`` for a required parameter.
    default: str | None
    templated: bool
    line: int


@dataclass(frozen=True)
class ParameterList:
    """The documented parameters of one class or function."""

    path: Path
    line: int
    #: The dotted path of the class or function.
    target: str
    parameters: tuple[DocParameter, ...]


def _lines(path: Path) -> list[str]:
    return (REPO / path).read_text(encoding="utf-8").splitlines()


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one page, in order."""
    lines = _lines(path)
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path}:{index + 1}: a code block is never closed")
        directive = _DIRECTIVE.match(lines[index - 1]) if index > 0 else None
        found.append(
            Block(
                path=path,
                line=index + 1,
                language=opening["language"],
                code="\n".join(lines[index + 1 : end]) + "\n",
                directive=directive["kind"] if directive else None,
                argument=directive["argument"] if directive else "",
            )
        )
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    """The fenced code blocks of every page."""
    return [block for path in DOC_FILES for block in blocks(path)]


def parameter_lists(path: Path) -> list[ParameterList]:
    """The parameter lists of one page."""
    lines = _lines(path)
    found: list[ParameterList] = []
    for index, line in enumerate(lines):
        marker = _PARAMETERS.match(line)
        if marker is None:
            continue
        items: list[DocParameter] = []
        item_line = index + 1
        while item_line < len(lines) and lines[item_line].strip():
            text = lines[item_line]
            if text.startswith("- "):
                item = _ITEM.match(text)
                if item is None:
                    raise AssertionError(
                        f"{path}:{item_line + 1}: a parameter item must read "
                        "- **`name`** (`type`, default `value`[, templated]): ..., not " + repr(text)
                    )
                items.append(
                    DocParameter(
                        name=item["name"],
                        type=item["type"],
                        default=None if item["required"] else item["default"],
                        templated=bool(item["templated"]),
                        line=item_line + 1,
                    )
                )
            elif not text.startswith("  "):
                break
            item_line += 1
        found.append(ParameterList(path=path, line=index + 1, target=marker["path"], parameters=tuple(items)))
    return found


def all_parameter_lists() -> list[ParameterList]:
    """The parameter lists of every page."""
    return [plist for path in DOC_FILES for plist in parameter_lists(path)]
