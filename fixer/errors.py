"""Errors dfix reports to the user.

Every error a user can act on is a DfixError. The CLI prints its message as
"dfix: error: <message>" and exits with 2, so a message says what failed, on
which file or repository, and what the user can try.
"""

from collections.abc import Sequence


class DfixError(Exception):
    """A failure the user can act on."""


class InputError(DfixError):
    """A file that cannot be read as a Dockerfile (binary, empty, not UTF-8)."""


class ParseError(DfixError):
    """A Dockerfile could not be read or parsed."""


class WriteError(DfixError):
    """A fixed Dockerfile could not be written back."""


class GitError(DfixError):
    """A git operation failed.

    Carries the git command and git's stderr for -v output. str() gives one
    line: the message, then git's last meaningful stderr line if there is one.
    Callers must pass a command and stderr that hold no credentials.
    """

    def __init__(
        self, message: str, command: Sequence[str] = (), stderr: str = ""
    ) -> None:
        self.message = message
        self.command = list(command)
        self.stderr = stderr
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        detail = _last_line(self.stderr)
        if not detail or detail in self.message:
            return self.message

        return f"{self.message}: {detail}"


class PullRequestError(DfixError):
    """Pushing a branch or opening a pull request failed."""


def _last_line(text: str) -> str:
    # git ends with the line that matters ("fatal: ...", "error: ..."); hints
    # come before it.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
