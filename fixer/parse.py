"""Read Dockerfile text into a read-only view that transforms can edit against.

BuildKit's own parser (the ``dockerfile`` package) decides where each
instruction starts and ends and what its words are. Everything else is read
from the raw text, so that an edit is a span of the original characters and
every character no fix touches stays where it was.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import dockerfile as buildkit

from fixer.errors import ParseError

logger = logging.getLogger(__name__)

LINE_RE = re.compile(r"[^\n]*\n|[^\n]+")
DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
SUPPRESS_RE = re.compile(
    r"""^\s*\#\s*dfix:\s*
        (?P<kind>ignore|skip-file)        # the suppression kind
        (?:\s*=\s*(?P<names>[\w,\s-]+))?  # optional list of transform names
        \s*$""",
    re.VERBOSE,
)
POSIX_SHELLS = frozenset({"sh", "bash", "ash", "dash", "zsh", "ksh", "busybox"})
WINDOWS_IMAGE_MARKERS = ("windows", "nanoserver", "servercore", "powershell")


@dataclass(frozen=True)
class Heredoc:
    """One here-document of an instruction, with the raw span of its body."""

    name: str
    body_start: int
    body_end: int
    content: str


@dataclass(frozen=True)
class Instruction:
    """One instruction, as BuildKit reads it, placed in the raw text.

    ``first_line`` and ``last_line`` are 0-based and inclusive. ``start`` is
    the offset of the keyword and ``end`` the offset just past the last
    character of the last line, before its line ending. For ``ONBUILD RUN x``
    the keyword is ``ONBUILD`` and ``trigger`` is ``RUN``.
    """

    index: int
    keyword: str
    trigger: str | None
    first_line: int
    last_line: int
    start: int
    end: int
    flags: tuple[str, ...]
    arguments: tuple[str, ...]
    is_json_form: bool
    original: str
    heredocs: tuple[Heredoc, ...]
    stage: int

    @property
    def effective_keyword(self) -> str:
        """Return the keyword that runs: ``RUN`` for ``ONBUILD RUN``."""
        return self.trigger or self.keyword

    def mount_targets(self, mount_type: str) -> list[str]:
        """Return where the RUN's ``--mount`` flags of ``mount_type`` mount.

        ``--mount=type=cache,target=/root/.cache/pip`` gives the path for
        ``"cache"``; a mount with no type is a bind mount.
        """
        targets = []
        for flag in self.flags:
            if not flag.startswith("--mount="):
                continue
            fields = dict(
                part.partition("=")[::2] for part in flag[len("--mount=") :].split(",")
            )
            target = (
                fields.get("target") or fields.get("dst") or fields.get("destination")
            )
            if fields.get("type", "bind") == mount_type and target:
                targets.append(target)
        return targets

    def flag(self, name: str) -> str | None:
        """Return the value of ``--name=value``, or None when it is absent."""
        prefix = f"--{name}="
        for flag in self.flags:
            if flag.startswith(prefix):
                return flag[len(prefix) :]
            if flag == f"--{name}":
                return ""
        return None


@dataclass(frozen=True)
class Stage:
    """One build stage: a FROM and the instructions up to the next FROM."""

    index: int
    from_instruction: Instruction
    image: str
    image_start: int
    image_end: int
    name: str | None
    platform: str | None
    instructions: tuple[Instruction, ...]

    @property
    def first_line(self) -> int:
        return self.from_instruction.first_line

    @property
    def last_line(self) -> int:
        return self.instructions[-1].last_line


@dataclass
class Dockerfile:
    """A parsed Dockerfile. Transforms read it and never change it."""

    text: str
    path: str = "Dockerfile"
    lines: tuple[str, ...] = field(init=False)
    line_starts: tuple[int, ...] = field(init=False)
    instructions: tuple[Instruction, ...] = field(init=False)
    escape: str = field(init=False)
    directives: dict[str, str] = field(init=False)
    cache: dict[str, object] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.lines = tuple(LINE_RE.findall(self.text))
        starts = []
        offset = 0
        for line in self.lines:
            starts.append(offset)
            offset += len(line)
        self.line_starts = tuple(starts)
        self.directives = _read_directives(self.lines)
        self.escape = self.directives.get("escape", "\\")
        if self.escape not in ("\\", "`"):
            self.escape = "\\"
        self.instructions = tuple(self._read_instructions())

    # -- text helpers ------------------------------------------------------

    @cached_property
    def newline(self) -> str:
        """Return the line ending new lines should use: the file's own."""
        crlf = sum(1 for line in self.lines if line.endswith("\r\n"))
        lf = sum(1 for line in self.lines if line.endswith("\n"))
        return "\r\n" if crlf and crlf * 2 >= lf else "\n"

    def line_text(self, line: int) -> str:
        """Return line ``line`` (0-based) without its line ending."""
        return self.lines[line].rstrip("\r\n")

    def line_end(self, line: int) -> int:
        """Return the offset just past the content of ``line``."""
        return self.line_starts[line] + len(self.line_text(line))

    def line_of(self, offset: int) -> int:
        """Return the 0-based line holding ``offset``."""
        low, high = 0, len(self.line_starts) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.line_starts[middle] <= offset:
                low = middle
            else:
                high = middle - 1
        return low

    def indentation(self, line: int) -> str:
        text = self.line_text(line)
        return text[: len(text) - len(text.lstrip(" \t"))]

    @property
    def ends_with_newline(self) -> bool:
        return self.text.endswith("\n")

    # -- structure -----------------------------------------------------------

    @cached_property
    def stages(self) -> tuple[Stage, ...]:
        stages: list[Stage] = []
        current: list[Instruction] = []
        for instruction in self.instructions:
            if instruction.keyword == "FROM":
                if current:
                    stages.append(self._make_stage(len(stages), current))
                current = [instruction]
            elif current:
                current.append(instruction)
        if current:
            stages.append(self._make_stage(len(stages), current))
        return tuple(stages)

    @property
    def final_stage(self) -> Stage | None:
        return self.stages[-1] if self.stages else None

    @cached_property
    def global_args(self) -> dict[str, str]:
        """Return ARG defaults declared before the first FROM."""
        values: dict[str, str] = {}
        for instruction in self.instructions:
            if instruction.keyword == "FROM":
                break
            if instruction.keyword == "ARG":
                for argument in instruction.arguments:
                    name, _, default = argument.partition("=")
                    values[name] = default
        return values

    def stage_by_name(self, name: str) -> Stage | None:
        for stage in self.stages:
            if stage.name is not None and stage.name == name.lower():
                return stage
        return None

    def parent_stage(self, stage: Stage) -> Stage | None:
        """Return the earlier stage this stage's FROM names, if any."""
        parent = self.stage_by_name(stage.image)
        if parent is not None and parent.index < stage.index:
            return parent
        return None

    def environment(self, instruction: Instruction) -> dict[str, str]:
        """Return ENV and defaulted ARG values in scope at ``instruction``.

        ENV reaches the stages built FROM this one; ARG defaults reach only
        their own stage. Values are the text as written, unexpanded.
        """
        if instruction.stage < 0:
            return {}
        chain: list[Stage] = []
        stage: Stage | None = self.stages[instruction.stage]
        while stage is not None and stage not in chain:
            chain.append(stage)
            stage = self.parent_stage(stage)
        values: dict[str, str] = {}
        for depth, stage in enumerate(reversed(chain)):
            own = depth == len(chain) - 1
            for earlier in stage.instructions:
                if earlier.index >= instruction.index:
                    break
                if earlier.keyword == "ENV":
                    pairs = earlier.arguments
                    for position in range(0, len(pairs) - 1, 2):
                        values[pairs[position]] = pairs[position + 1]
                elif earlier.keyword == "ARG" and own:
                    for argument in earlier.arguments:
                        name, equals, default = argument.partition("=")
                        if equals:
                            values[name] = default
        return values

    def mentions(self, word: str, ignore_case: bool = False) -> bool:
        """Tell whether ``word`` occurs anywhere in the text (cached)."""
        key = f"mentions:{ignore_case}:{word}"
        found = self.cache.get(key)
        if not isinstance(found, bool):
            if ignore_case:
                found = word.lower() in self.text.lower()
            else:
                found = word in self.text
            self.cache[key] = found
        return found

    def instruction_at(self, line: int) -> Instruction | None:
        """Return the instruction whose lines include ``line``, if any."""
        starts = self.cache.get("instruction_starts")
        if not isinstance(starts, list):
            starts = [instruction.first_line for instruction in self.instructions]
            self.cache["instruction_starts"] = starts
        index = bisect.bisect_right(starts, line) - 1
        if index < 0:
            return None
        instruction = self.instructions[index]
        return instruction if line <= instruction.last_line else None

    def suppressed(self, instruction: Instruction) -> frozenset[str] | None:
        """Return transform names suppressed for ``instruction``.

        An empty set means every transform. None means nothing is suppressed.
        """
        line = instruction.first_line - 1
        if line < 0:
            return None
        match = SUPPRESS_RE.match(self.line_text(line))
        if match is None or match["kind"] != "ignore":
            return None
        names = match["names"]
        if not names:
            return frozenset()
        return frozenset(name.strip() for name in names.split(",") if name.strip())

    @cached_property
    def skip_file(self) -> bool:
        for line in self.lines:
            match = SUPPRESS_RE.match(line.rstrip("\r\n"))
            if match is not None and match["kind"] == "skip-file":
                return True
        return False

    def is_posix_shell(self, instruction: Instruction) -> bool:
        """Tell whether a shell-form RUN of this instruction runs under sh.

        A SHELL instruction naming powershell or cmd, or a Windows base image
        (whose default shell is cmd), means the RUN text is not sh.
        """
        if instruction.stage < 0:
            return True
        shells = self.cache.get("posix_shells")
        if not isinstance(shells, dict):
            shells = self._posix_shells()
            self.cache["posix_shells"] = shells
        return bool(shells[instruction.index])

    def _posix_shells(self) -> dict[int, bool]:
        """Return, per instruction, whether sh runs it; one pass per stage."""
        result: dict[int, bool] = {}
        at_end: dict[int, bool] = {}
        for stage in self.stages:
            parent = self.parent_stage(stage)
            if parent is not None:
                posix = at_end[parent.index]
            else:
                posix = not self._is_windows_image(stage)
            for instruction in stage.instructions:
                result[instruction.index] = posix
                if instruction.keyword == "SHELL":
                    posix = _names_posix_shell(instruction)
            at_end[stage.index] = posix
        return result

    def _is_windows_image(self, stage: Stage) -> bool:
        image = stage.image.lower()
        if any(marker in image for marker in WINDOWS_IMAGE_MARKERS):
            return True
        # "# escape=`" is the Windows convention; it decides only when the
        # image itself is a variable and cannot tell.
        return self.escape == "`" and image.startswith("$")

    # -- reading -------------------------------------------------------------

    def _read_instructions(self) -> Iterator[Instruction]:
        try:
            commands = buildkit.parse_string(self.text)
        except buildkit.GoParseError as error:
            raise ParseError(f"{self.path}: {error}") from error
        stage = -1
        for index, command in enumerate(commands):
            first_line = command.start_line - 1
            last_line = command.end_line - 1
            if command.cmd.upper() == "FROM":
                stage += 1
            line_start = self.line_starts[first_line]
            raw_first = self.lines[first_line]
            start = line_start + len(raw_first) - len(raw_first.lstrip(" \t"))
            # A trailing heredoc terminator or an escape at EOF can make the
            # parser's range end past the text; clamp it.
            last_line = min(last_line, len(self.lines) - 1)
            trigger = command.sub_cmd.upper() if command.sub_cmd else None
            yield Instruction(
                index=index,
                keyword=command.cmd.upper(),
                trigger=trigger,
                first_line=first_line,
                last_line=last_line,
                start=start,
                end=self.line_end(last_line),
                flags=tuple(command.flags),
                arguments=tuple(command.value),
                is_json_form=bool(command.json),
                original=command.original,
                heredocs=tuple(self._place_heredocs(command, first_line, last_line)),
                stage=stage,
            )

    def _place_heredocs(
        self, command: buildkit.Command, first_line: int, last_line: int
    ) -> Iterator[Heredoc]:
        if not command.heredocs:
            return
        # Bodies follow the instruction line(s) in order; each body ends at
        # a line that is the heredoc's name (tabs stripped for <<-).
        line = first_line + 1
        while line <= last_line and self._continues(line - 1):
            line += 1
        for heredoc in command.heredocs:
            body_first = line
            while (
                line <= last_line and self.line_text(line).lstrip("\t") != heredoc.name
            ):
                line += 1
            body_start = (
                self.line_starts[body_first]
                if body_first < len(self.lines)
                else len(self.text)
            )
            body_end = (
                self.line_starts[line]
                if line <= last_line
                else self.line_end(last_line)
            )
            yield Heredoc(heredoc.name, body_start, body_end, heredoc.content)
            line += 1

    def _continues(self, line: int) -> bool:
        return self.line_text(line).rstrip(" \t").endswith(self.escape)

    def _make_stage(self, index: int, instructions: list[Instruction]) -> Stage:
        source = instructions[0]
        words = list(source.arguments)
        image = words[0] if words else ""
        name = (
            words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else None
        )
        image_start, image_end = self._find_word(source, image)
        platform = source.flag("platform")
        return Stage(
            index=index,
            from_instruction=source,
            image=image,
            image_start=image_start,
            image_end=image_end,
            name=name,
            platform=platform,
            instructions=tuple(instructions),
        )

    def _find_word(self, instruction: Instruction, word: str) -> tuple[int, int]:
        """Return the raw span of ``word`` after the keyword and flags."""
        if not word:
            return instruction.end, instruction.end
        text = self.text
        position = instruction.start + len(instruction.keyword)
        for flag in instruction.flags:
            found = text.find(flag, position, instruction.end)
            if found >= 0:
                position = found + len(flag)
        found = text.find(word, position, instruction.end)
        if found < 0:
            return instruction.end, instruction.end
        return found, found + len(word)

    # -- shell ---------------------------------------------------------------

    def shell_text(self, instruction: Instruction) -> LogicalText | None:
        """Return the shell command of a shell-form RUN, mapped to raw offsets.

        Returns None for the JSON form, for heredoc RUNs (see
        ``heredoc_scripts``) and for RUNs that do not run under sh.
        """
        if instruction.effective_keyword != "RUN" or instruction.is_json_form:
            return None
        if instruction.heredocs or not self.is_posix_shell(instruction):
            return None
        logical = join_instruction(self, instruction)
        return logical.after_keyword_and_flags(instruction.trigger is not None)

    def heredoc_scripts(self, instruction: Instruction) -> list[LogicalText]:
        """Return the heredoc bodies of a RUN that sh runs as its script.

        ``RUN <<EOF`` and ``RUN <<EOF bash`` qualify; ``RUN python3 <<EOF``
        does not, since its body is not shell.
        """
        if instruction.effective_keyword != "RUN" or not instruction.heredocs:
            return []
        if not self.is_posix_shell(instruction):
            return []
        words = (
            [
                word
                for word in instruction.arguments[0].split()
                if not word.startswith("<<")
            ]
            if instruction.arguments
            else []
        )
        if words and (
            words[0].rsplit("/", 1)[-1] not in POSIX_SHELLS
            or any(not word.startswith("-") for word in words[1:])
        ):
            return []
        scripts = []
        for heredoc in instruction.heredocs[:1]:
            body = self.text[heredoc.body_start : heredoc.body_end]
            scripts.append(LogicalText(body, [(0, heredoc.body_start, len(body))]))
        return scripts


@dataclass
class LogicalText:
    """Text joined from pieces of the raw file, with a map back to it.

    ``pieces`` holds (logical offset, raw offset, length) in order.
    """

    text: str
    pieces: list[tuple[int, int, int]]

    @cached_property
    def _ends(self) -> list[int]:
        return [logical + length for logical, _, length in self.pieces]

    def raw(self, offset: int) -> int:
        """Return the raw offset of logical ``offset``.

        An offset at the end of a piece maps to the end of that piece, so an
        insertion after a word lands before a following continuation.
        """
        index = bisect.bisect_left(self._ends, offset)
        if index < len(self.pieces):
            logical, raw, _ = self.pieces[index]
            return raw + max(0, offset - logical)
        logical, raw, length = self.pieces[-1]
        return raw + length

    def raw_start(self, offset: int) -> int:
        """Return the raw offset of the character that starts at ``offset``."""
        index = bisect.bisect_right(self._ends, offset)
        if index < len(self.pieces):
            logical, raw, _ = self.pieces[index]
            return raw + max(0, offset - logical)
        return self.raw(offset)

    def after_keyword_and_flags(self, onbuild: bool) -> LogicalText:
        """Return the part after ``RUN`` and its ``--flags``."""
        position = 0
        keywords = 2 if onbuild else 1
        for _ in range(keywords):
            position = _skip_space(self.text, position)
            position = _skip_word(self.text, position)
        position = _skip_space(self.text, position)
        while self.text.startswith("--", position):
            position = _skip_word(self.text, position)
            position = _skip_space(self.text, position)
        return self.slice(position)

    def slice(self, start: int) -> LogicalText:
        pieces = []
        for logical, raw, length in self.pieces:
            if logical + length <= start:
                continue
            cut = max(0, start - logical)
            pieces.append((logical + cut - start, raw + cut, length - cut))
        return LogicalText(self.text[start:], pieces or [(0, self.raw(start), 0)])


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t":
        position += 1
    return position


def _skip_word(text: str, position: int) -> int:
    while position < len(text) and text[position] not in " \t":
        position += 1
    return position


def join_instruction(dockerfile: Dockerfile, instruction: Instruction) -> LogicalText:
    """Join an instruction's lines the way BuildKit does, keeping a raw map.

    The escape character and line ending of a continued line are dropped,
    and so are comment lines and blank lines inside the continuation.
    """
    pieces: list[tuple[int, int, int]] = []
    parts: list[str] = []
    logical = 0
    escape = dockerfile.escape
    for line in range(instruction.first_line, instruction.last_line + 1):
        text = dockerfile.line_text(line)
        start = dockerfile.line_starts[line]
        if line == instruction.first_line:
            offset = instruction.start - start
            text, start = text[offset:], instruction.start
        elif not text.strip(" \t") or text.lstrip(" \t").startswith("#"):
            continue
        stripped = text.rstrip(" \t")
        # A last line ending in the escape is no continuation (BuildKit reads
        # "ENV C trailing\\" as ending in an escaped escape) unless the file
        # ends there: "RUN something \" at EOF.
        at_end = line == len(dockerfile.lines) - 1
        if stripped.endswith(escape) and (line < instruction.last_line or at_end):
            text = stripped[: -len(escape)]
        pieces.append((logical, start, len(text)))
        parts.append(text)
        logical += len(text)
    return LogicalText("".join(parts), pieces)


def _read_directives(lines: tuple[str, ...]) -> dict[str, str]:
    """Return parser directives (``# escape=``, ``# syntax=``) at the top."""
    directives: dict[str, str] = {}
    for line in lines:
        text = line.rstrip("\r\n").lstrip("\ufeff")
        match = DIRECTIVE_RE.match(text)
        if match is None:
            break
        directives[match[1].lower()] = match[2]
    return directives


def _names_posix_shell(shell: Instruction) -> bool:
    if not shell.arguments:
        return False
    program = shell.arguments[0].replace("\\", "/").rsplit("/", 1)[-1].lower()
    return program.removesuffix(".exe") in POSIX_SHELLS


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse ``text``; raise ParseError when BuildKit rejects it."""
    return Dockerfile(text, path)
