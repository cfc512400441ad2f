"""Fixes as data: spans of the original text and what replaces them.

Transforms build ``Fix`` records from the helpers here; only
``apply_edits`` turns edits into new text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fixer.parse import Dockerfile, Instruction


class Safety(enum.Enum):
    """Whether building the fixed file gives the same image."""

    SAFE = "safe"
    UNSAFE = "review"


@dataclass(frozen=True, order=True)
class Edit:
    """Replace ``text[start:end]`` with ``replacement``."""

    start: int
    end: int
    replacement: str


@dataclass(frozen=True)
class Fix:
    """One problem found and the edits that remove it.

    ``line`` is 0-based. ``note`` tells a reviewer what to check for review
    fixes (which paths a new user cannot write, say).
    """

    transform: str
    line: int
    problem: str
    action: str
    edits: tuple[Edit, ...]
    safety: Safety
    note: str = ""


@dataclass(frozen=True)
class Skip:
    """A place a transform would act on but leaves alone, and why."""

    transform: str
    line: int
    reason: str


Finding = Fix | Skip


@dataclass(frozen=True)
class Settings:
    """Options for one run, shared by every transform. Never mutated."""

    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def option(self, transform: str, name: str, default: Any) -> Any:
        """Return a per-transform option from configuration, or ``default``."""
        return self.options.get(transform, {}).get(name, default)


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """Return ``text`` with ``edits`` applied; they must not overlap."""
    ordered = sorted(edits)
    pieces = []
    position = 0
    for edit in ordered:
        assert edit.start >= position, f"overlapping edits at {edit.start}"
        pieces.append(text[position : edit.start])
        pieces.append(edit.replacement)
        position = edit.end
    pieces.append(text[position:])
    return "".join(pieces)


def overlaps(first: Iterable[Edit], second: Iterable[Edit]) -> bool:
    """Tell whether any edit of ``first`` touches the span of one in ``second``.

    Two insertions at the same offset overlap, since their order would be
    a guess.
    """
    second = list(second)
    for one in first:
        for other in second:
            if one.start < other.end and other.start < one.end:
                return True
            if one.start == other.start:
                return True
            if one.start == one.end and other.start < one.start < other.end:
                return True
    return False


def insert(offset: int, text: str) -> Edit:
    return Edit(offset, offset, text)


def replace(start: int, end: int, text: str) -> Edit:
    return Edit(start, end, text)


def insert_lines_before(
    dockerfile: Dockerfile, line: int, lines: Iterable[str]
) -> Edit:
    """Insert whole lines before ``line`` with the file's own line ending."""
    if line >= len(dockerfile.lines):
        return insert_lines_at_end(dockerfile, lines)
    newline = dockerfile.newline
    lines = _after_heredoc(dockerfile, line - 1, list(lines))
    text = "".join(f"{content}{newline}" for content in lines)
    return insert(dockerfile.line_starts[line], text)


def insert_lines_after(dockerfile: Dockerfile, line: int, lines: Iterable[str]) -> Edit:
    """Insert whole lines after ``line`` (0-based), keeping line endings."""
    if line + 1 < len(dockerfile.lines):
        return insert_lines_before(dockerfile, line + 1, lines)
    return insert_lines_at_end(dockerfile, lines)


def insert_lines_at_end(dockerfile: Dockerfile, lines: Iterable[str]) -> Edit:
    """Append lines; a file without a final newline stays without one."""
    newline = dockerfile.newline
    body = newline.join(
        _after_heredoc(dockerfile, len(dockerfile.lines) - 1, list(lines))
    )
    if not dockerfile.text:
        return insert(0, body + newline)
    if dockerfile.ends_with_newline:
        return insert(len(dockerfile.text), body + newline)
    return insert(len(dockerfile.text), newline + body)


def _after_heredoc(dockerfile: Dockerfile, line: int, lines: list[str]) -> list[str]:
    """Put a blank line between a heredoc's terminator and inserted lines.

    BuildKit reads ``EOF`` followed directly by ``USER x`` fine, but hadolint
    and other tools that users run next fail to parse it.
    """
    for instruction in dockerfile.instructions:
        if instruction.heredocs and instruction.last_line == line:
            return ["", *lines]
    return lines


def continuation(dockerfile: Dockerfile, instruction: Instruction) -> str:
    """Return the text that breaks a RUN onto a new, indented line.

    A one-line RUN continues with four spaces; a multi-line RUN reuses the
    indentation of its last line.
    """
    if instruction.first_line == instruction.last_line:
        indent = "    "
    else:
        indent = dockerfile.indentation(instruction.last_line) or "    "
    return f" {dockerfile.escape}{dockerfile.newline}{indent}"
