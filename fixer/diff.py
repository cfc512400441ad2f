"""Unified diffs that ``git apply`` and ``patch -p1`` accept."""

from __future__ import annotations

import difflib

NO_NEWLINE = "\\ No newline at end of file\n"


def unified_diff(original: str, fixed: str, path: str) -> str:
    """Return the diff from ``original`` to ``fixed``, labelled a/ and b/.

    Lines keep their own endings, so CRLF files give CRLF diff lines. A
    last line without a newline gets git's marker after it.
    """
    if original == fixed:
        return ""
    label = path.lstrip("/")
    old_lines = _split_on_newline_only(original)
    new_lines = _split_on_newline_only(fixed)
    output = []
    for line in difflib.unified_diff(
        old_lines, new_lines, f"a/{label}", f"b/{label}", lineterm="\n"
    ):
        if line.startswith(("---", "+++", "@@")):
            output.append(line if line.endswith("\n") else line + "\n")
            continue
        if line.endswith("\n"):
            output.append(line)
        else:
            output.append(line + "\n" + NO_NEWLINE)
    return "".join(output)


def _split_on_newline_only(text: str) -> list[str]:
    # str.splitlines also breaks on form feeds and other separators, which
    # are ordinary characters in a Dockerfile and in a patch.
    lines = text.split("\n")
    result = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        result.append(lines[-1])
    return result
