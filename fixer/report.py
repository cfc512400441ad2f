"""Everything dfix prints: report lines on stderr, diffs and JSON on stdout."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from fixer.engine import FileResult

JSON_VERSION = 1
PROGRESS_THRESHOLD = 20


@dataclass
class Totals:
    files: int = 0
    changed_files: int = 0
    fixes: int = 0
    review: int = 0
    skips: int = 0
    errors: int = 0


@dataclass
class Reporter:
    """Collects results and prints them in the chosen format and mode."""

    mode: str  # "diff", "write", "check" or "stdin"
    output_format: str = "text"
    quiet: bool = False
    totals: Totals = field(default_factory=Totals)
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        plain = bool(os.environ.get("NO_COLOR"))
        self.err = Console(
            stderr=True,
            no_color=plain,
            color_system=None if plain else "auto",
            emoji=False,
            highlight=False,
            soft_wrap=True,
        )

    @property
    def status(self) -> str:
        return "applied" if self.mode in ("write", "stdin") else "would apply"

    def file_done(self, result: FileResult, display: str, diff: str) -> None:
        """Report one file's fixes and skips; print its diff in diff mode."""
        self.totals.files += 1
        self.totals.fixes += len(result.fixes)
        self.totals.review += sum(fix.safety == "review" for fix in result.fixes)
        self.totals.skips += len(result.skips)
        if result.changed:
            self.totals.changed_files += 1
        if self.output_format == "json":
            self.records.append(_file_record(result, display, diff, self.status))
            return
        for bug in result.bugs:
            self.error(f"{display}: dfix bug: {bug}; please report it")
        if diff and self.mode == "diff":
            sys.stdout.write(diff)
        for fix in result.fixes:
            tags = ("review, " if fix.safety == "review" else "") + self.status
            status = escape(f"[{tags}]")
            self._line(
                f"{escape(display)}:{fix.line}: [bold]{escape(fix.transform)}[/]: "
                f"{escape(fix.problem)}; {escape(fix.action)} [dim]{status}[/]"
            )
        for skip in [] if self.quiet else result.skips:
            self._line(
                f"{escape(display)}:{skip.line}: [bold]{escape(skip.transform)}[/]: "
                f"left unchanged [yellow]{escape(f'[skipped: {skip.reason}]')}[/]"
            )

    def error(self, message: str) -> None:
        """Report an error that belongs to no file (a missing path, a git
        failure)."""
        self.totals.errors += 1
        if self.output_format == "json":
            self.records.append(_error_record(None, message))
        self.err.print(f"[red]dfix: error:[/] {escape(message)}")

    def file_error(self, display: str, message: str) -> None:
        """Report a file that could not be read, parsed or written."""
        self.totals.files += 1
        self.totals.errors += 1
        if self.output_format == "json":
            self.records.append(_error_record(display, message))
        self.err.print(f"[red]dfix: error:[/] {escape(message)}")

    def info(self, message: str) -> None:
        self.err.print(escape(message))

    def finish(self) -> None:
        """Print the summary line (text) or the whole report (JSON)."""
        totals = self.totals
        if self.output_format == "json":
            report = {
                "version": JSON_VERSION,
                "mode": self.mode,
                "files": self.records,
                "summary": {
                    "files": totals.files,
                    "changed_files": totals.changed_files,
                    "fixes": totals.fixes,
                    "review_fixes": totals.review,
                    "skips": totals.skips,
                    "errors": totals.errors,
                },
            }
            sys.stdout.write(json.dumps(report, indent=2, sort_keys=False) + "\n")
            return
        fixes = _plural(totals.fixes, "fix", "fixes")
        files = _plural(totals.changed_files, "file")
        if self.mode == "write":
            summary = f"fixed {files} ({fixes})"
        else:
            summary = f"{files} would be fixed ({fixes})"
        if totals.review:
            summary += f", {totals.review} for review"
        summary += f"; {_plural(totals.files, 'file')} checked"
        if totals.errors:
            summary += f", {_plural(totals.errors, 'error')}"
        self.err.print(escape(summary))

    @contextmanager
    def progress(self, total: int) -> Iterator[Any]:
        """Show a progress bar on a terminal when a run covers many files."""
        if total < PROGRESS_THRESHOLD or not self.err.is_terminal:
            yield None
            return
        with Progress(console=self.err, transient=True) as progress:
            task = progress.add_task("dfix", total=total)
            yield lambda: progress.advance(task)

    def _line(self, markup: str) -> None:
        self.err.print(markup)


def _file_record(
    result: FileResult, display: str, diff: str, status: str
) -> dict[str, Any]:
    return {
        "path": display,
        "status": ("fixed" if status == "applied" else "would-fix")
        if result.changed
        else "unchanged",
        "fixes": [
            {
                "transform": fix.transform,
                "line": fix.line,
                "problem": fix.problem,
                "action": fix.action,
                "safety": fix.safety,
                "note": fix.review_note,
                "status": status,
            }
            for fix in result.fixes
        ],
        "skips": [
            {"transform": skip.transform, "line": skip.line, "reason": skip.reason}
            for skip in result.skips
        ],
        "bugs": list(result.bugs),
        "diff": diff,
    }


def _error_record(display: str | None, message: str) -> dict[str, Any]:
    return {
        "path": display,
        "status": "error",
        "error": message,
        "fixes": [],
        "skips": [],
        "bugs": [],
        "diff": "",
    }


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def print_text(text: str) -> None:
    """Write text to stdout as is (rules, explain, stdin mode)."""
    sys.stdout.write(text)
