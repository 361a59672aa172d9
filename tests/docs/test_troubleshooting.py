"""
docs/troubleshooting.md lists every message the package gives its users, so the list cannot drift.

The messages are read from the package's source, not from a list kept by hand: the text of every
``AsanaAuditLog*Error``, ``AirflowFailException``, ``AirflowSkipException`` and ``AirflowSensorTimeout``
the package makes; Asana's error hints (``_HINTS``); the instant and retention messages of
``timeutils`` (they reach users inside configuration errors); the ``message`` of the triggers' events;
``test_connection``'s answers; and every ``log.warning``. A message's literal parts (the text between
its placeholders) must each appear in the page, where words in angle brackets stand for the values.
The stand-in (``airflow_provider_asana_audit.testing``) is a test tool with messages of its own and
is left out.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.markdown import REPO

PACKAGE = REPO / "airflow_provider_asana_audit"
PAGE = REPO / "docs" / "troubleshooting.md"
#: Calls whose arguments are messages for users.
_MESSAGE_CALLS = re.compile(
    r"AsanaAuditLog\w*Error|AirflowFailException|AirflowSkipException|AirflowSensorTimeout"
)
#: printf-style placeholders of log messages.
_PLACEHOLDER = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdifr]")
_EDGES = " .,:;()[]'\"=\n"


@dataclass(frozen=True)
class Message:
    """One message of the package, as the literal fragments between its placeholders."""

    where: str
    fragments: tuple[str, ...]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts)


class _Collector(ast.NodeVisitor):
    """Finds the messages of one module (see the module's docstring)."""

    def __init__(self, path: Path, tree: ast.Module) -> None:
        self.path = path
        self.tree = tree
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.messages: list[Message] = []

    # -------------------------------------------------------------- what a message is made of

    def _assigned(self, name: str) -> list[ast.expr]:
        """The values assigned to ``name`` in the enclosing function, else at module level."""
        for scope in [*reversed(self.functions), self.tree]:
            values = [
                node.value
                for node in ast.walk(scope)
                if isinstance(node, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == name for target in node.targets)
            ]
            if values:
                return values
        return []

    def _texts(self, node: ast.expr | None, depth: int = 0) -> list[str]:
        """The literal pieces of a message expression."""
        if node is None or depth > 5:
            return []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            return [
                part.value
                for part in node.values
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            ]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self._texts(node.left, depth + 1) + self._texts(node.right, depth + 1)
        if isinstance(node, ast.IfExp):
            return self._texts(node.body, depth + 1) + self._texts(node.orelse, depth + 1)
        if isinstance(node, ast.Name):
            return [text for value in self._assigned(node.id) for text in self._texts(value, depth + 1)]
        if isinstance(node, ast.Tuple):
            return [text for element in node.elts for text in self._texts(element, depth + 1)]
        return []

    def _add(self, node: ast.AST, expressions: list[ast.expr]) -> None:
        texts = [text for expression in expressions for text in self._texts(expression)]
        fragments = tuple(fragment for text in texts for fragment in _fragments(text))
        if fragments:
            self.messages.append(
                Message(f"{self.path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}", fragments)
            )

    # -------------------------------------------------------------- where messages are

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node)
        if node.name in ("test_connection", "retention_problem"):
            for returned in ast.walk(node):
                if isinstance(returned, ast.Return):
                    self._add(returned, [returned.value] if returned.value is not None else [])
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
        if _MESSAGE_CALLS.fullmatch(name):
            self._add(node, [*node.args, *(keyword.value for keyword in node.keywords)])
        elif name == "warning" and node.args:
            self._add(node, [node.args[0]])
        elif name == "ValueError" and self.path.name == "timeutils.py":
            self._add(node, list(node.args))
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == "message":
                self._add(node, [value])
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(target, ast.Name) and target.id == "_HINTS" for target in node.targets):
            assert isinstance(node.value, ast.Dict)
            self._add(node, [value for value in node.value.values])
        self.generic_visit(node)


def _fragments(text: str) -> list[str]:
    """The literal parts of a message worth looking for: two words or more, whitespace collapsed."""
    pieces = [re.sub(r"\s+", " ", piece.replace("`", "")).strip(_EDGES) for piece in _PLACEHOLDER.split(text)]
    return [piece for piece in pieces if " " in piece]


def _messages() -> list[Message]:
    messages: list[Message] = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        collector = _Collector(path, tree)
        collector.visit(tree)
        messages.extend(collector.messages)
    return messages


def _page_text() -> str:
    return re.sub(r"\s+", " ", PAGE.read_text(encoding="utf-8").replace("`", ""))


MESSAGES = _messages()


def test_messages_are_found_in_every_part_of_the_package() -> None:
    files = {message.where.split(":")[0] for message in MESSAGES}
    for module in (
        "client.py",
        "hooks/audit_log.py",
        "operators/audit_log.py",
        "sensors/audit_log.py",
        "triggers/audit_log.py",
        "storage/__init__.py",
        "slices.py",
        "timeutils.py",
    ):
        assert f"airflow_provider_asana_audit/{module}" in files, module
    assert len(MESSAGES) > 50


@pytest.mark.parametrize("message", MESSAGES, ids=[message.where for message in MESSAGES])
def test_troubleshooting_lists_the_message(message: Message) -> None:
    page = _page_text()
    missing = [fragment for fragment in message.fragments if fragment not in page]
    assert not missing, (
        f"docs/troubleshooting.md does not list the message of {message.where}: add it, with what to do "
        f"(missing: {missing})"
    )
