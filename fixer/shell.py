"""Find the simple commands of a RUN's shell text with tree-sitter-bash.

The shell text comes from ``Dockerfile.shell_text`` (continuations joined,
comment lines dropped) with a map back to raw offsets, so every word found
here carries the raw span an edit can target.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache

import tree_sitter
import tree_sitter_bash

from fixer.parse import Dockerfile, Instruction, LogicalText, join_instruction

logger = logging.getLogger(__name__)

# Words that run the command that follows them: sudo -u app pip install x.
# The *_OPTIONS_WITH_ARGUMENT sets name their options that take a value.
WRAPPERS = frozenset({"sudo", "env", "command", "exec", "nice", "nohup", "time"})
SUDO_OPTIONS_WITH_ARGUMENT = frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t"})
ENV_OPTIONS_WITH_ARGUMENT = frozenset({"-u", "-C", "-S"})
QUOTED_LITERALS = frozenset({"raw_string", "string"})


@dataclass(frozen=True)
class Word:
    """One word of a command. ``value`` is None when it holds expansions."""

    text: str
    value: str | None
    start: int
    end: int


@dataclass(frozen=True)
class Command:
    """A simple command, with wrappers such as ``sudo`` or ``env X=1`` split off.

    ``start`` and ``end`` are raw offsets of the whole command node, wrappers
    and redirections included; ``words`` starts with the program.
    """

    words: tuple[Word, ...]
    wrappers: tuple[Word, ...]
    start: int
    end: int
    logical_start: int
    logical_end: int

    @property
    def program(self) -> str | None:
        """Return the program's base name (``pip3`` for ``/usr/bin/pip3``)."""
        if not self.words or self.words[0].value is None:
            return None
        return self.words[0].value.rsplit("/", 1)[-1]

    @property
    def arguments(self) -> tuple[Word, ...]:
        return self.words[1:]

    def values(self) -> list[str | None]:
        return [word.value for word in self.arguments]


@dataclass(frozen=True)
class Script:
    """The commands of one shell text, in source order."""

    logical: LogicalText
    commands: tuple[Command, ...]
    has_error: bool
    root: tree_sitter.Node

    def raw(self, offset: int) -> int:
        return self.logical.raw(offset)


@lru_cache(maxsize=1)
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(_language())


@lru_cache(maxsize=1)
def _language() -> tree_sitter.Language:
    return tree_sitter.Language(tree_sitter_bash.language())


@lru_cache(maxsize=1)
def _command_query() -> tree_sitter.QueryCursor:
    # Every simple command, wherever it sits: lists, pipelines, subshells,
    # if and for bodies, and command substitutions inside words: $(pip ...).
    query = tree_sitter.Query(_language(), "(command) @command")
    return tree_sitter.QueryCursor(query)


def read_script(logical: LogicalText) -> Script:
    """Parse ``logical`` as bash and collect its simple commands."""
    data = logical.text.encode("utf-8")
    tree = _parser().parse(data)
    to_char = _byte_to_char(logical.text, data)
    commands: list[Command] = []
    for node in _command_query().captures(tree.root_node).get("command", []):
        command = _make_command(node, logical, to_char)
        if command is not None:
            commands.append(command)
    commands.sort(key=lambda command: command.logical_start)
    return Script(logical, tuple(commands), tree.root_node.has_error, tree.root_node)


def _byte_to_char(text: str, data: bytes) -> list[int] | None:
    if len(data) == len(text):
        return None
    table = [0] * (len(data) + 1)
    position = 0
    for index, character in enumerate(text):
        size = len(character.encode("utf-8"))
        for step in range(size):
            table[position + step] = index
        position += size
    table[len(data)] = len(text)
    return table


def _make_command(
    node: tree_sitter.Node, logical: LogicalText, to_char: list[int] | None
) -> Command | None:
    words: list[Word] = []
    for child in node.children:
        if child.type == "variable_assignment" or child.type.endswith("redirect"):
            continue
        words.append(_make_word(child, logical, to_char))
    if not words:
        return None
    wrappers, program_words = _split_wrappers(words)
    start = _char(node.start_byte, to_char)
    end = _char(node.end_byte, to_char)
    return Command(
        words=tuple(program_words),
        wrappers=tuple(wrappers),
        start=logical.raw_start(start),
        end=logical.raw(end),
        logical_start=start,
        logical_end=end,
    )


def _make_word(
    node: tree_sitter.Node, logical: LogicalText, to_char: list[int] | None
) -> Word:
    start = _char(node.start_byte, to_char)
    end = _char(node.end_byte, to_char)
    text = logical.text[start:end]
    return Word(
        text, _literal_value(node, text), logical.raw_start(start), logical.raw(end)
    )


def _literal_value(node: tree_sitter.Node, text: str) -> str | None:
    """Return what the word means to the shell when that is certain."""
    kind = node.type
    if kind == "command_name" and node.children:
        return _literal_value(node.children[0], text)
    if kind in ("word", "number"):
        if any(character in text for character in "$`\\*?[{~"):
            return None
        return text
    if kind == "raw_string":
        return text[1:-1]
    if kind == "string":
        inner = text[1:-1]
        if any(character in inner for character in "$`\\"):
            return None
        return inner
    if kind == "concatenation":
        # --config-settings="x" is one word made of parts. Byte offsets equal
        # character offsets only in ASCII text; anything else stays unknown.
        if not text.isascii():
            return None
        parts = []
        for child in node.children:
            start = child.start_byte - node.start_byte
            end = child.end_byte - node.start_byte
            value = _literal_value(child, text[start:end])
            if value is None:
                return None
            parts.append(value)
        return "".join(parts)
    return None


def _char(offset: int, to_char: list[int] | None) -> int:
    return offset if to_char is None else to_char[offset]


def _split_wrappers(words: list[Word]) -> tuple[list[Word], list[Word]]:
    """Split ``sudo -u x env A=1 pip install`` into wrappers and the program."""
    index = 0
    while index < len(words):
        value = words[index].value
        name = value.rsplit("/", 1)[-1] if value else None
        if name not in WRAPPERS:
            break
        index += 1
        takes_argument = (
            SUDO_OPTIONS_WITH_ARGUMENT if name == "sudo" else ENV_OPTIONS_WITH_ARGUMENT
        )
        while index < len(words):
            option = words[index].value or ""
            if name == "env" and "=" in option and not option.startswith("-"):
                index += 1
                continue
            if not option.startswith("-") or option == "--":
                index += option == "--"
                break
            index += 2 if option in takes_argument else 1
    return words[:index], words[index:]


def scripts_of(dockerfile: Dockerfile, instruction: Instruction) -> list[Script]:
    """Return the sh scripts a RUN runs: its shell form or its heredoc body.

    Empty for JSON form, non-shell heredocs and RUNs under a non-POSIX
    shell. Results are cached on the Dockerfile, which never changes.
    """
    cache = dockerfile.cache.setdefault("scripts", {})
    assert isinstance(cache, dict)
    if instruction.index not in cache:
        logical = dockerfile.shell_text(instruction)
        texts = (
            [logical]
            if logical is not None
            else dockerfile.heredoc_scripts(instruction)
        )
        cache[instruction.index] = [read_script(text) for text in texts]
    scripts: list[Script] = cache[instruction.index]
    return scripts


PLAIN_WORD_RE = re.compile(r"[A-Za-z0-9_./:=+-]+")


def plain_command(dockerfile: Dockerfile, instruction: Instruction) -> Command | None:
    """Return a RUN's command when it is plain words that every shell reads alike.

    For a RUN under cmd or powershell only text such as
    ``pip install docker-compose==1.29`` qualifies: words of letters, digits
    and ``_./:=+-`` on one line, with no quotes, variables or operators.
    """
    if instruction.effective_keyword != "RUN" or instruction.is_json_form:
        return None
    if instruction.heredocs or instruction.first_line != instruction.last_line:
        return None
    logical = join_instruction(dockerfile, instruction).after_keyword_and_flags(
        instruction.trigger is not None
    )
    words = []
    for match in re.finditer(r"\S+", logical.text):
        if not PLAIN_WORD_RE.fullmatch(match[0]):
            return None
        start, end = logical.raw_start(match.start()), logical.raw(match.end())
        words.append(Word(match[0], match[0], start, end))
    if not words:
        return None
    return Command(
        words=tuple(words),
        wrappers=(),
        start=words[0].start,
        end=words[-1].end,
        logical_start=0,
        logical_end=len(logical.text),
    )
