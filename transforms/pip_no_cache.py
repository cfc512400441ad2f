"""Add --no-cache-dir to pip calls that would keep a cache in the image.

What it does:
    Finds every pip call in a RUN (pip, pip3, pip3.12, python -m pip,
    python3.12 -m pip; also behind sudo or env, inside &&, ||, pipes,
    subshells, if and for bodies, and in a RUN <<EOF script) whose
    subcommand is install, download or wheel, and inserts --no-cache-dir
    right after the subcommand. It leaves a call alone when it already has
    --no-cache-dir or its own --cache-dir, when PIP_NO_CACHE_DIR is set by
    ENV (in this stage or one it is built from), by a defaulted ARG or in
    the same RUN, and when the RUN mounts a cache over pip's cache
    directory. Look-alikes such as uv pip, pipenv, pipx and poetry are not
    pip. Text inside quotes (echo "pip install x", sh -c '...') is not a
    command and is never edited.

Why:
    pip keeps every downloaded archive and built wheel under
    /root/.cache/pip. In an image that cache is dead weight, often tens or
    hundreds of megabytes, in a layer no later step can shrink.

Example:
    Before:
        RUN pip install -r requirements.txt
    After:
        RUN pip install --no-cache-dir -r requirements.txt

Fix safety:
    Safe. Only pip's own download and wheel cache is left out of the image;
    nothing that runs in the container reads it, and the installed packages
    are the same.

Known gaps:
    - A pip call whose subcommand is a variable (pip $CMD x) is left alone,
      since its subcommand cannot be known.
    - Under a non-POSIX shell (powershell, cmd) only a RUN of plain words
      on one line (pip install flask==3.0) is edited; any other pip install
      there is reported as skipped.
    - A pip configuration file that sets no-cache-dir is not read.

References:
    hadolint DL3042.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from fixer.edits import Finding, Fix, Safety, Settings, Skip, insert
from fixer.parse import Dockerfile, Instruction
from fixer.shell import Command, Word, plain_command, scripts_of

NAME = "pip-no-cache"
SAFETY = Safety.SAFE

PIP_RE = re.compile(r"pip(\d+(\.\d+)?)?")
PYTHON_RE = re.compile(r"python(\d+(\.\d+)?)?")
CACHING_SUBCOMMANDS = frozenset({"install", "download", "wheel"})
# pip's general options that take a separate value: pip --log x install.
OPTIONS_WITH_VALUE = frozenset(
    {
        "--proxy",
        "--log",
        "--timeout",
        "--retries",
        "--exists-action",
        "--trusted-host",
        "--cert",
        "--client-cert",
        "--python",
        "--keyring-provider",
        "--use-feature",
        "--use-deprecated",
        "--src",
        "--global-option",
        "--config-settings",
        "-C",
    }
)


def find_fixes(dockerfile: Dockerfile, settings: Settings) -> Iterator[Finding]:
    for instruction in dockerfile.instructions:
        if instruction.effective_keyword != "RUN" or instruction.is_json_form:
            continue
        if _has_pip_cache_mount(instruction) or _cache_disabled(
            dockerfile, instruction
        ):
            continue
        if not dockerfile.is_posix_shell(instruction):
            yield from _fix_plain_command(dockerfile, instruction)
            continue
        for script in scripts_of(dockerfile, instruction):
            if "PIP_NO_CACHE_DIR" in script.logical.text:
                continue
            for command in script.commands:
                fix = _make_fix(dockerfile, command)
                if fix is not None:
                    yield fix


def _fix_plain_command(
    dockerfile: Dockerfile, instruction: Instruction
) -> Iterator[Finding]:
    # RUN pip install docker-compose, under powershell or cmd: plain words
    # mean the same there, so the flag can go in; anything else is reported.
    command = plain_command(dockerfile, instruction)
    fix = None if command is None else _make_fix(dockerfile, command)
    if fix is not None:
        yield fix
    elif command is None and "pip" in instruction.original:
        if "install" in instruction.original:
            yield Skip(NAME, instruction.first_line, "RUN is not run by sh")


def _make_fix(dockerfile: Dockerfile, command: Command) -> Fix | None:
    position = _subcommand_end(command)
    if position is None:
        return None
    return Fix(
        transform=NAME,
        line=dockerfile.line_of(position),
        problem="pip keeps its download cache in the image",
        action="add --no-cache-dir",
        edits=(insert(position, " --no-cache-dir"),),
        safety=SAFETY,
    )


def _has_pip_cache_mount(instruction: Instruction) -> bool:
    # RUN --mount=type=cache,target=/root/.cache/pip pip install x
    return any(
        "pip" in target or target.rstrip("/").endswith(".cache")
        for target in instruction.mount_targets("cache")
    )


def _cache_disabled(dockerfile: Dockerfile, instruction: Instruction) -> bool:
    # pip disables its cache for any value it can read as a boolean, even
    # "false", so only the variable's presence matters.
    if not dockerfile.mentions("PIP_NO_CACHE_DIR"):
        return False
    return "PIP_NO_CACHE_DIR" in dockerfile.environment(instruction)


def _subcommand_end(command: Command) -> int | None:
    """Return where --no-cache-dir goes, or None when the call needs nothing."""
    arguments = _pip_arguments(command)
    if arguments is None:
        return None
    index = 0
    while index < len(arguments):
        value = arguments[index].value
        if value is None:
            return None
        if value in ("--cache-dir", "--no-cache-dir") or value.startswith(
            ("--cache-dir=", "--no-cache-dir=")
        ):
            return None
        if not value.startswith("-"):
            break
        index += 2 if value in OPTIONS_WITH_VALUE else 1
    else:
        return None
    if arguments[index].value not in CACHING_SUBCOMMANDS:
        return None
    for word in arguments[index + 1 :]:
        if word.value is not None and (
            word.value.startswith(("--no-cache-dir", "--cache-dir"))
        ):
            return None
    return arguments[index].end


def _pip_arguments(command: Command) -> list[Word] | None:
    """Return the words after pip itself, for pip and python -m pip."""
    program = command.program
    if program is None:
        return None
    if PIP_RE.fullmatch(program):
        return list(command.arguments)
    if not PYTHON_RE.fullmatch(program):
        return None
    words = list(command.arguments)
    for index, word in enumerate(words):
        # python3 -u -m pip install x
        if word.value == "-m":
            if index + 1 < len(words) and words[index + 1].value == "pip":
                return words[index + 2 :]
            return None
        if word.value is None or not word.value.startswith("-"):
            return None
    return None
