r"""Add --no-cache to apk add and group build-only packages for apk del.

What it does:
    Inserts --no-cache after the subcommand of every apk add that lacks it
    (apk add, apk --no-cache add, apk -U add, apk add --update; behind sudo
    or env; inside &&, ||, if and for bodies, and in a RUN <<EOF script).
    The flag is added even when the RUN later runs rm -rf /var/cache/apk/*
    (it is harmless there and keeps the rule simple). It is not added, with
    a skip reason, to apk add --no-network (nothing is fetched, so nothing
    is cached). It is not added when the RUN mounts a cache over
    /var/cache/apk or /etc/apk/cache, since that cache is wanted, nor, with
    a skip reason, when a RUN with any cache mount names /etc/apk/cache or
    --cache-dir (ln -s /pkg-cache /etc/apk/cache): --no-cache would bypass
    the cache the author set up.

    When a RUN adds packages and a later apk del in the same command list
    deletes some of them by name, those build-only packages become one
    apk add --no-cache --virtual .build-deps <packages>, and the del
    deletes .build-deps instead. A command list is the RUN's top-level &&
    and ; chain, or the body of one if branch, case item, loop or group.
    The group add moves up in front of the commands before the old add,
    since a del after them shows the packages were meant for them:
        RUN pip install x && apk add build-base && apk del build-base
    It stops at a set, apk, export or source command, or at anything that
    mentions apk (an edit of /etc/apk/repositories, say). Packages the RUN
    keeps stay in a plain apk add --no-cache, so an add that mixes kept and
    deleted packages is split. The group is named .build-deps (option
    "group"), or .build-deps-2 and so on while that name is in use.

    When the add is in an earlier RUN of the same stage than the del, the
    add RUN's commands move to the front of the del RUN (joined with &&,
    or after its leading set -e) and the add RUN is removed; the next pass
    groups the packages. This needs every instruction in between to be
    one the commands can move across: LABEL, EXPOSE, CMD, ENTRYPOINT,
    HEALTHCHECK, STOPSIGNAL, ONBUILD or MAINTAINER; and, when the add RUN
    only runs apk add/update with literal words, also COPY and ADD
    (without a named --chown), WORKDIR, and ENV or ARG that set no proxy,
    SSL, fetch, PATH or APK variable. Otherwise (a RUN in between, say) a
    skip is reported.

    Left as they are: an existing --virtual or -t group, package lists in
    variables ($PHPIZE_DEPS), apk del of a group (apk del --no-network
    .build-deps), local .apk files, and apk inside quotes or sh -c.

Why:
    Without --no-cache apk keeps the package index it downloads under
    /var/cache/apk, a few megabytes in a layer no later step can shrink.
    Build tools deleted in a later RUN still ship in the earlier layer;
    added after the step that needed them, they were not there in time.
    A --virtual group deletes exactly what its add installed.

Example:
    Before:
        FROM python:3.12-alpine
        RUN pip install -r requirements.txt && \
            apk add build-base && \
            apk del build-base
    After:
        FROM python:3.12-alpine
        RUN apk add --no-cache --virtual .build-deps build-base && \
            pip install -r requirements.txt && \
            apk del .build-deps

Fix safety:
    Safe for --no-cache alone: only apk's index cache is left out of the
    image. Unsafe (review) for grouping and merging: steps change order, so
    check that nothing in between relied on the packages being absent and
    that the deleted packages are only needed to build. A package that was
    installed before the add (by the base image, say) was removed by
    apk del by name but stays installed when only the group is deleted.

Known gaps:
    - apk update before an apk add is kept: with --no-cache it only leaves
      its index in the layer, but a later step could read that index.
    - An add and a del in two ONBUILD RUNs, or in RUNs that use a heredoc
      or have different flags (--mount, --network), are not merged; a skip
      is reported.
    - An add and a del in different command lists (an add inside if ... fi
      and the del after it) or in a pipeline are not grouped, nor is an
      add that would have to move or go away while joined with || or &;
      a skip is reported.
    - Build-only adds with different options (-X repository) are not
      grouped together; a skip is reported.
    - When moving the group add to the front would take a comment with it,
      the add is grouped where it stands, after the steps before it. When
      grouping or merging would delete a comment, a skip is reported. A
      comment line among packages that move to the group stays where it
      was, next to the packages that stay.
    - A del RUN that mixes ; or || with && and does not start with set -e
      is not merged with the add RUN; a skip is reported.
    - RUNs under a non-POSIX shell are not edited.
    - A cache-mounted RUN that mentions /etc/apk/cache or --cache-dir gets
      no --no-cache even if the mention is not what points apk's cache
      into the mount.

References:
    hadolint DL3019. Alpine wiki: Alpine Package Keeper (apk add -t).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import tree_sitter

from fixer.edits import (
    Edit,
    Finding,
    Fix,
    Safety,
    Settings,
    Skip,
    continuation,
    insert,
    replace,
)
from fixer.parse import Dockerfile, Instruction, Stage
from fixer.shell import Command, Script, Word, scripts_of

NAME = "apk-virtual"
SAFETY = Safety.UNSAFE

DEFAULT_GROUP = ".build-deps"
# apk options that take the next word as their value: apk -X URL add x.
OPTIONS_WITH_VALUE = frozenset(
    {
        "-X",
        "--repository",
        "-p",
        "--root",
        "--arch",
        "--cache-dir",
        "--keys-dir",
        "--repositories-file",
        "-t",
        "--virtual",
        "--wait",
        "--timeout",
        "--cache-max-age",
        "--progress-fd",
    }
)
SHORT_OPTIONS_WITH_VALUE = "Xpt"
# Operators that run the next command after this one, whatever happened.
SEQUENCE_OPERATORS = frozenset({"&&", ";", "\n"})
SEPARATOR_TOKENS = frozenset({"&&", "||", ";", "&"})
# Commands a group add is never moved in front of: they may set up what
# apk needs (repositories, keys, proxies) or change how the shell runs.
BARRIER_PROGRAMS = frozenset(
    {
        "apk",
        "set",
        "export",
        "source",
        ".",
        "eval",
        "exec",
        "unset",
        "update-ca-certificates",
        "setup-apkrepos",
    }
)
# Instructions a RUN's commands can move across: they only record image
# metadata and do not change what a RUN sees.
INERT_KEYWORDS = frozenset(
    {
        "LABEL",
        "EXPOSE",
        "MAINTAINER",
        "CMD",
        "ENTRYPOINT",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "ONBUILD",
    }
)
CONSTRAINT_RE = re.compile(r"[=<>~@]")
COMMENT_RE = re.compile(r"(^|[ \t])#")
# Variables whose value changes how apk fetches: a moved apk add must not
# cross an ENV or ARG that sets one.
FETCH_VARIABLE_RE = re.compile(
    r"proxy|^ssl_|^fetch_|^http_|^https_|^ftp_|^apk|^path$|^ld_", re.IGNORECASE
)
NUMERIC_OWNER_RE = re.compile(r"\d+(:\d+)?")
SET_ERREXIT_RE = re.compile(r"-[a-zA-Z]*e")

NOTE_GROUP = (
    "Build packages now install and delete as a virtual group, and the add "
    "may have moved to the front: check no step between needed them absent, "
    "that they are only needed to build, and that none was installed before "
    "(apk del by name removed it; deleting the group keeps it)."
)
NOTE_MERGE = (
    "The apk add RUN moved into the RUN that deletes its packages: check that "
    "no instruction it crossed relied on it, and that the packages are only "
    "needed by the commands of the del RUN."
)


@dataclass(frozen=True)
class ApkCall:
    """An apk command split into its options, subcommand and packages."""

    command: Command
    subcommand: Word
    options: tuple[tuple[Word, ...], ...]
    packages: tuple[Word, ...]
    group: str | None

    @property
    def action(self) -> str | None:
        return self.subcommand.value

    @property
    def no_cache(self) -> bool:
        return any(option[0].value == "--no-cache" for option in self.options)

    @property
    def no_network(self) -> bool:
        return any(option[0].value == "--no-network" for option in self.options)


@dataclass
class Item:
    """One command (or compound statement) of an && / ; / newline list.

    ``start``/``end`` are logical offsets; ``operator`` joins it to the
    next item ("\n" when only a newline does).
    """

    start: int
    end: int
    command: Command | None
    operator: str = "\n"


@dataclass(frozen=True)
class Body:
    """A script with its top-level items and apk calls."""

    instruction: Instruction
    script: Script
    items: tuple[Item, ...]
    calls: tuple[ApkCall, ...]

    def raw_start(self, item: Item) -> int:
        return self.script.logical.raw_start(item.start)

    def raw_end(self, item: Item) -> int:
        return self.script.logical.raw(item.end)

    def sequence(self, command: Command) -> tuple[Item, ...]:
        """Return the items of the && / ; list that runs ``command``.

        That is the script's top level, or the body of the if branch, case
        item, loop or { } group the command sits in.
        """
        node = _command_node(self.script.root, command, self.script.logical.text)
        if node is None:
            return ()
        while node.parent is not None and node.parent.type in (
            "list",
            "redirected_statement",
        ):
            node = node.parent
        if node.parent is None:
            return ()
        return tuple(_sequence_items(self.script, node.parent, node))


def find_fixes(dockerfile: Dockerfile, settings: Settings) -> Iterator[Finding]:
    default_group = str(settings.option(NAME, "group", DEFAULT_GROUP))
    bodies = _read_bodies(dockerfile)
    busy: set[int] = set()
    for stage in dockerfile.stages:
        yield from _find_merges(dockerfile, stage.instructions, bodies, busy)
    for instruction in dockerfile.instructions:
        if instruction.effective_keyword != "RUN" or instruction.is_json_form:
            continue
        if not dockerfile.is_posix_shell(instruction):
            if "apk" in instruction.original and "add" in instruction.original:
                yield Skip(NAME, instruction.first_line, "RUN is not run by sh")
            continue
        if instruction.index in busy:
            continue
        wants_no_cache = not _has_apk_cache_mount(instruction)
        linked = wants_no_cache and _links_apk_cache(instruction)
        if linked:
            wants_no_cache = False
        for body in bodies.get(instruction.index, []):
            handled: set[int] = set()
            finding = _group_finding(
                dockerfile, body, bodies, default_group, wants_no_cache, handled
            )
            if finding is not None:
                yield finding
            if linked:
                # RUN --mount=type=cache,target=/pkg-cache ln -s /pkg-cache
                # /etc/apk/cache && apk add x: --no-cache would bypass it.
                for call in body.calls:
                    if call.action == "add" and not call.no_cache:
                        line = dockerfile.line_of(call.subcommand.end)
                        yield Skip(NAME, line, "apk cache is kept in a cache mount")
            if not wants_no_cache:
                continue
            # TODO: an apk update before the add (apk update && apk add x) is
            # kept. With --no-cache it only leaves its index in the layer, but
            # dropping it needs proof that no later step (apk search, an add
            # this transform cannot edit) reads that index.
            for call in body.calls:
                if call.action != "add" or call.no_cache:
                    continue
                if call.command.logical_start in handled:
                    continue
                if call.no_network:
                    # apk add --no-network .rundeps $runDeps: nothing is
                    # fetched, so there is no index to cache.
                    line = dockerfile.line_of(call.subcommand.end)
                    yield Skip(NAME, line, "apk add --no-network fetches nothing")
                    continue
                yield Fix(
                    transform=NAME,
                    line=dockerfile.line_of(call.subcommand.end),
                    problem="apk add keeps its index cache in the image",
                    action="add --no-cache",
                    edits=(insert(call.subcommand.end, " --no-cache"),),
                    safety=Safety.SAFE,
                )


# -- reading ----------------------------------------------------------------


def _read_bodies(dockerfile: Dockerfile) -> dict[int, list[Body]]:
    bodies: dict[int, list[Body]] = {}
    for instruction in dockerfile.instructions:
        if instruction.effective_keyword != "RUN":
            continue
        for script in scripts_of(dockerfile, instruction):
            calls = tuple(
                call
                for call in (_read_apk(command) for command in script.commands)
                if call is not None
            )
            items = tuple(_items(script))
            bodies.setdefault(instruction.index, []).append(
                Body(instruction, script, items, calls)
            )
    return bodies


def _read_apk(command: Command) -> ApkCall | None:
    """Split ``apk [options] add [options] packages``; None when unsure."""
    if command.program != "apk":
        return None
    words = command.arguments
    options: list[tuple[Word, ...]] = []
    packages: list[Word] = []
    subcommand: Word | None = None
    group: str | None = None
    only_packages = False
    index = 0
    while index < len(words):
        word = words[index]
        value = word.value
        if subcommand is not None and (
            only_packages or value is None or not value.startswith("-")
        ):
            packages.append(word)
            index += 1
            continue
        if value is None:
            return None
        if value == "--":
            only_packages = True
            index += 1
            continue
        if not value.startswith("-"):
            subcommand = word
            index += 1
            continue
        width, virtual = _option_shape(value)
        option = tuple(words[index : index + width])
        if virtual:
            group = _group_of(value, option)
        options.append(option)
        index += width
    if subcommand is None:
        return None
    return ApkCall(command, subcommand, tuple(options), tuple(packages), group)


def _option_shape(value: str) -> tuple[int, bool]:
    """Return how many words an option spans and whether it names a group."""
    if value.startswith("--"):
        name, equals, _ = value.partition("=")
        width = 2 if name in OPTIONS_WITH_VALUE and not equals else 1
        return width, name == "--virtual"
    # A cluster of short options: -qU, -t.name, -qt .name
    for position, letter in enumerate(value[1:], start=1):
        if letter in SHORT_OPTIONS_WITH_VALUE:
            width = 2 if position == len(value) - 1 else 1
            return width, letter == "t"
    return 1, False


def _group_of(value: str, option: tuple[Word, ...]) -> str:
    if len(option) == 2:
        return option[1].value or ""
    if value.startswith("--virtual="):
        return value.partition("=")[2]
    return value[value.index("t") + 1 :]


def _items(script: Script) -> list[Item]:
    """Flatten the script's top-level && / ; / newline lists into items."""
    return _sequence_items(script, script.root, None)


def _sequence_items(
    script: Script, container: tree_sitter.Node, member: tree_sitter.Node | None
) -> list[Item]:
    """Flatten the statements of ``container`` that run in one sequence.

    Keywords such as then, else, do or ;; end a sequence; ``member`` picks
    the sequence that holds it (None: the first one).
    """
    by_start = {command.logical_start: command for command in script.commands}
    to_char = _char_offsets(script.logical.text)
    segment: list[tree_sitter.Node] = []
    for child in container.children:
        if child.type == "comment":
            continue
        if child.is_named or child.type in SEPARATOR_TOKENS:
            segment.append(child)
            continue
        # A keyword or bracket: then, else, do, done, ;;, {, }
        if member is None and segment or any(node == member for node in segment):
            break
        segment = []
    items: list[Item] = []

    def walk(node: tree_sitter.Node) -> None:
        kind = node.type
        if kind == "list":
            for child in node.children:
                if child.is_named:
                    walk(child)
                elif items and child.type in SEPARATOR_TOKENS:
                    items[-1].operator = child.type
            return
        body = (
            node.child_by_field_name("body") if kind == "redirected_statement" else None
        )
        if body is not None and body.type in ("command", "list"):
            # tree-sitter reads "a && b >f" as (a && b) >f; the redirection
            # belongs to the last command.
            walk(body)
            items[-1].end = to_char(node.end_byte)
            return
        start = to_char(node.start_byte)
        command = by_start.get(start) if kind == "command" else None
        items.append(Item(start, to_char(node.end_byte), command))

    for node in segment:
        if node.is_named:
            walk(node)
        elif items:
            items[-1].operator = node.type
    return items


def _command_node(
    root: tree_sitter.Node, command: Command, text: str
) -> tree_sitter.Node | None:
    """Return the tree-sitter node of ``command``."""
    to_char = _char_offsets(text)
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "command" and to_char(node.start_byte) == command.logical_start:
            return node
        stack.extend(node.children)
    return None


def _char_offsets(text: str) -> Callable[[int], int]:
    data = text.encode("utf-8")
    if len(data) == len(text):
        return lambda offset: offset
    return lambda offset: len(data[:offset].decode("utf-8", errors="ignore"))


def _has_apk_cache_mount(instruction: Instruction) -> bool:
    # RUN --mount=type=cache,target=/var/cache/apk apk add x
    return any(
        "/var/cache/apk" in target or "/etc/apk/cache" in target
        for target in instruction.mount_targets("cache")
    )


def _links_apk_cache(instruction: Instruction) -> bool:
    """Tell whether a cache-mounted RUN points apk's cache into the mount."""
    if not instruction.mount_targets("cache"):
        return False
    return "/etc/apk/cache" in instruction.original or (
        "--cache-dir" in instruction.original
    )


# -- merging an add RUN into a later del RUN ----------------------------------


def _find_merges(
    dockerfile: Dockerfile,
    instructions: Sequence[Instruction],
    bodies: dict[int, list[Body]],
    busy: set[int],
) -> Iterator[Finding]:
    for position, instruction in enumerate(instructions):
        if instruction.index in busy:
            continue
        for body in bodies.get(instruction.index, []):
            for call in body.calls:
                names = _deleted_names(call)
                if not names:
                    continue
                added_here = {
                    _package_name(word.value)
                    for earlier in _adds_before(body, call)
                    for word in earlier.packages
                    if word.value is not None
                }
                missing = [name for name in names if name not in added_here]
                found = _find_add_run(instructions, position, missing, bodies)
                if found is None:
                    continue
                finding = _merge_finding(
                    dockerfile, instructions, found, position, bodies, call
                )
                if finding is None:
                    continue
                yield finding
                if isinstance(finding, Fix):
                    busy.update({instruction.index, instructions[found].index})
                    return
                break


def _deleted_names(call: ApkCall) -> list[str]:
    """Return the package names an apk del deletes; [] for groups or unknowns."""
    if call.action != "del":
        return []
    values = [word.value for word in call.packages]
    if any(value is None for value in values):
        return []
    return [value for value in values if value and not value.startswith(".")]


def _adds_before(body: Body, call: ApkCall) -> list[ApkCall]:
    """Return the plain (groupless) apk adds that run before ``call``."""
    return [
        earlier
        for earlier in body.calls
        if earlier.action == "add"
        and earlier.group is None
        and earlier.command.logical_start < call.command.logical_start
    ]


def _package_name(value: str | None) -> str:
    # gcc=12.2.1-r0, musl-dev>1, curl@edge: apk del names the package alone.
    return CONSTRAINT_RE.split(value or "", maxsplit=1)[0]


def _is_package(word: Word) -> bool:
    value = word.value
    return (
        value is not None
        and bool(_package_name(value))
        and not value.startswith(".")
        and "/" not in value
        and not value.endswith(".apk")
    )


def _find_add_run(
    instructions: Sequence[Instruction],
    position: int,
    names: list[str],
    bodies: dict[int, list[Body]],
) -> int | None:
    """Return the position of the nearest earlier RUN that adds a name.

    A RUN that deletes the name after adding it (or only deletes it)
    ends the search: the package is not installed when the del runs.
    """
    wanted = set(names)
    for earlier in range(position - 1, -1, -1):
        instruction = instructions[earlier]
        if instruction.effective_keyword != "RUN":
            continue
        for body in reversed(bodies.get(instruction.index, [])):
            for call in reversed(body.calls):
                if call.action == "del":
                    wanted -= set(_deleted_names(call))
                elif call.action == "add" and call.group is None:
                    for word in call.packages:
                        if _is_package(word) and _package_name(word.value) in wanted:
                            return earlier
        if not wanted:
            return None
    return None


def _merge_finding(
    dockerfile: Dockerfile,
    instructions: Sequence[Instruction],
    add_position: int,
    del_position: int,
    bodies: dict[int, list[Body]],
    call: ApkCall,
) -> Finding | None:
    add_run = instructions[add_position]
    del_run = instructions[del_position]
    line = dockerfile.line_of(call.command.start)
    if add_run.trigger != del_run.trigger:
        # ONBUILD RUN apk add gcc ... RUN apk del gcc: they run in different
        # builds, so the del does not undo this add.
        return None
    if add_run.trigger is not None:
        # TODO: an add and a del in two ONBUILD RUNs are not merged: the
        # instructions between them run in the parent build, not between the
        # triggers, so which moves are safe needs its own rules.
        return Skip(NAME, line, "apk add and del in different ONBUILD RUNs")
    if add_run.heredocs or del_run.heredocs:
        # TODO: RUN <<EOF scripts are not merged with another RUN; joining a
        # heredoc body with a shell-form command needs its own splicing.
        return Skip(NAME, line, "apk add or del RUN uses a heredoc")
    if add_run.flags != del_run.flags:
        # TODO: RUNs with different flags (RUN --network=none apk del x) are
        # not merged: the add would run under the del RUN's mounts and
        # network, which may not let it fetch.
        return Skip(NAME, line, "apk add and del RUNs have different flags")
    add_bodies = bodies.get(add_run.index, [])
    del_bodies = bodies.get(del_run.index, [])
    if len(add_bodies) != 1 or len(del_bodies) != 1:
        return None
    add_body, del_body = add_bodies[0], del_bodies[0]
    if add_body.script.has_error or del_body.script.has_error:
        return None
    if not add_body.items or not del_body.items:
        return None

    for between in instructions[add_position + 1 : del_position]:
        if not _can_cross(between, add_body):
            keyword = between.effective_keyword
            return Skip(NAME, line, f"apk add and del split by {keyword}")

    moved_start = add_body.raw_start(add_body.items[0])
    moved_end = add_body.raw_end(add_body.items[-1])
    tail = dockerfile.text[moved_end : add_run.end]
    if tail.strip(" \t;\r\n" + dockerfile.escape) and not _has_comment(tail):
        # RUN apk add gcc &: only whole commands are moved.
        return None
    if _has_comment(tail):
        # TODO: an add RUN with text after its last command (RUN apk add gcc
        # # compilers) is not merged, since only its commands move; keeping
        # the comment needs it moved along as a comment line.
        return Skip(NAME, line, "merging would drop a comment")
    target = _merge_target(dockerfile, del_body)
    if target is None:
        # TODO: a del RUN that mixes ; or || with && and does not start with
        # set -e is not merged: "add && a; b" would run b after a failed add.
        return Skip(NAME, line, "cannot join the two RUN scripts safely")
    offset, joiner = target
    moved = dockerfile.text[moved_start:moved_end].rstrip(" \t;")
    following = add_run.last_line + 1
    remove_end = (
        dockerfile.line_starts[following]
        if following < len(dockerfile.lines)
        else len(dockerfile.text)
    )
    edits = (
        Edit(dockerfile.line_starts[add_run.first_line], remove_end, ""),
        insert(offset, moved + joiner),
    )
    return Fix(
        transform=NAME,
        line=del_run.first_line,
        problem="apk del in a later RUN leaves packages in a layer",
        action="move the add into the del's RUN",
        edits=edits,
        safety=Safety.UNSAFE,
        note=NOTE_MERGE,
    )


def _can_cross(instruction: Instruction, add_body: Body) -> bool:
    """Tell whether the add RUN's commands may move below ``instruction``."""
    keyword = instruction.keyword
    if keyword in INERT_KEYWORDS:
        return True
    if not _is_only_apk(add_body):
        return False
    if keyword in ("COPY", "ADD"):
        # COPY --chown=nginx needs a user a package may create.
        owner = instruction.flag("chown")
        return owner is None or NUMERIC_OWNER_RE.fullmatch(owner) is not None
    if keyword == "WORKDIR":
        return not any(
            "/" in (word.value or "")
            for call in add_body.calls
            for word in call.command.words[1:]
        )
    if keyword in ("ENV", "ARG"):
        names = (
            instruction.arguments[::2]
            if keyword == "ENV"
            else [argument.partition("=")[0] for argument in instruction.arguments]
        )
        return not any(FETCH_VARIABLE_RE.search(name) for name in names)
    return False


def _is_only_apk(body: Body) -> bool:
    """Tell whether a RUN only installs packages: apk add/update, set, rm."""
    for item in body.items:
        command = item.command
        if command is None or any(word.value is None for word in command.words):
            return False
        if command.program == "set":
            continue
        if command.program == "rm":
            if all(
                "/var/cache/apk" in (word.value or "") or (word.value or "")[:1] == "-"
                for word in command.arguments
            ):
                continue
            return False
        call = next((call for call in body.calls if call.command is command), None)
        if call is None or call.action not in ("add", "update"):
            return False
    return True


def _merge_target(dockerfile: Dockerfile, body: Body) -> tuple[int, str] | None:
    """Return where the add RUN's commands go in the del RUN, and the joiner."""
    items = body.items
    if all(item.operator == "&&" for item in items[:-1]):
        return body.raw_start(items[0]), _and_joiner(dockerfile, body)
    first = items[0].command
    if (
        len(items) > 1
        and first is not None
        and first.program == "set"
        and any(SET_ERREXIT_RE.match(word.value or "") for word in first.arguments)
    ):
        # RUN set -eux; make; apk del gcc: the add goes after set -e.
        separator = dockerfile.text[body.raw_end(items[0]) : body.raw_start(items[1])]
        if _has_comment(separator):
            return None
        return body.raw_start(items[1]), separator
    return None


def _and_joiner(dockerfile: Dockerfile, body: Body) -> str:
    """Return " && " plus a line break in the style the del RUN uses."""
    escape, newline = dockerfile.escape, dockerfile.newline
    for before, after in zip(body.items, body.items[1:], strict=False):
        separator = dockerfile.text[body.raw_end(before) : body.raw_start(after)]
        if "\n" not in separator or _has_comment(separator):
            continue
        last = separator.rsplit("\n", 1)[1]
        indent = last[: len(last) - len(last.lstrip(" \t"))]
        if last.lstrip(" \t").startswith("&&"):
            # RUN a \
            #  && b
            return f" {escape}{newline}{indent}&& "
        return f" && {escape}{newline}{indent}"
    return " &&" + continuation(dockerfile, body.instruction)


# -- grouping within one RUN -------------------------------------------------


def _group_finding(
    dockerfile: Dockerfile,
    body: Body,
    bodies: dict[int, list[Body]],
    default_group: str,
    wants_no_cache: bool,
    handled: set[int],
) -> Finding | None:
    """Return the fix that groups one del's build-only packages, if any.

    ``handled`` receives the adds the fix rewrites, so no separate
    --no-cache fix touches them.
    """
    if body.script.has_error:
        return None
    for call in body.calls:
        names = set(_deleted_names(call))
        if not names:
            continue
        builds = [
            (add, [word for word in add.packages if _is_build(word, names)])
            for add in _adds_before(body, call)
        ]
        builds = [(add, words) for add, words in builds if words]
        if not builds:
            continue
        line = dockerfile.line_of(call.command.start)
        plan = _plan_group(dockerfile, body, call, builds, line)
        if isinstance(plan, Skip):
            return plan
        group = _group_name(dockerfile, body, bodies, default_group)
        edits = _group_edits(
            dockerfile, body, call, builds, plan, group, wants_no_cache
        )
        first_add, first_words = builds[0]
        if isinstance(edits, Skip) and _all_build(first_add, first_words):
            # TODO: echo building \ / # comment / && apk add gcc: moving the
            # add to the front would take the comment with it, so it is
            # grouped in place, after the steps before it; moving it needs a
            # removal that leaves comment lines behind.
            first = plan.indexes[0]
            in_place = Plan(plan.items, first, True, plan.indexes)
            edits = _group_edits(
                dockerfile, body, call, builds, in_place, group, wants_no_cache
            )
        if isinstance(edits, Skip):
            return edits
        handled.update(add.command.logical_start for add, _ in builds)
        return Fix(
            transform=NAME,
            line=line,
            problem="Build packages deleted by name, not as a group",
            action="add them with apk add --virtual",
            edits=tuple(edits),
            safety=Safety.UNSAFE,
            note=NOTE_GROUP,
        )
    return None


def _is_build(word: Word, deleted: set[str]) -> bool:
    return _is_package(word) and _package_name(word.value) in deleted


@dataclass(frozen=True)
class Plan:
    """Where the group add goes: before ``items[target]``, or ``in_place``."""

    items: tuple[Item, ...]
    target: int
    in_place: bool
    indexes: tuple[int, ...]


def _plan_group(
    dockerfile: Dockerfile,
    body: Body,
    call: ApkCall,
    builds: list[tuple[ApkCall, list[Word]]],
    line: int,
) -> Plan | Skip:
    items = body.sequence(call.command)
    del_index = _index_of(items, call.command)
    indexes = [_index_of(items, add.command) for add, _ in builds]
    if del_index is None or any(index is None for index in indexes):
        # TODO: an add and a del in different command lists (if [ -n "$x" ];
        # then apk add gcc; fi && make && apk del gcc), or in a pipeline, are
        # not grouped: moving commands in or out of a branch changes what
        # runs.
        return Skip(NAME, line, "apk add and del in different command lists")
    add_indexes = tuple(index for index in indexes if index is not None)
    first = add_indexes[0]
    if len({_option_key(add) for add, _ in builds}) > 1:
        # TODO: adds with different options (apk add -X edge-repo foo and
        # apk add gcc) are not grouped, since one group add has one set of
        # options; grouping them needs one group per option set.
        return Skip(NAME, line, "build-only apk adds differ in options")

    # Move the group add up past commands that cannot affect apk, as long
    # as each step keeps a plain && or ; on both sides.
    target = first
    while target > 0:
        previous = items[target - 1]
        if previous.operator not in SEQUENCE_OPERATORS:
            break
        if target > 1 and items[target - 2].operator not in SEQUENCE_OPERATORS:
            break
        if _is_barrier(dockerfile, body, previous):
            break
        target -= 1
    first_add, first_words = builds[0]
    in_place = target == first and _all_build(first_add, first_words)
    # The new group add takes the operator after items[target] as its own.
    joints = [] if in_place else list(items[max(target - 1, 0) : target + 1])
    for (add, words), index in zip(builds, add_indexes, strict=True):
        if _all_build(add, words) and not (in_place and index == first):
            # This add goes away: the operators on both sides must stay plain.
            joints.extend(items[max(index - 1, 0) : index + 1])
    if any(item.operator not in SEQUENCE_OPERATORS for item in joints):
        # TODO: an add joined with || or & (pip install x && apk add gcc ||
        # true) is not grouped: removing or moving it would change which
        # commands run.
        return Skip(NAME, line, "apk add joined by || or &")
    return Plan(items, target, in_place, add_indexes)


def _index_of(items: Sequence[Item], command: Command) -> int | None:
    for index, item in enumerate(items):
        if item.command is command:
            return index
    return None


def _option_key(add: ApkCall) -> tuple[str, ...]:
    return tuple(
        " ".join(word.text for word in option)
        for option in add.options
        if option[0].value != "--no-cache"
    )


def _all_build(add: ApkCall, words: list[Word]) -> bool:
    return len(words) == len(add.packages)


def _is_barrier(dockerfile: Dockerfile, body: Body, item: Item) -> bool:
    command = item.command
    if command is None or command.program is None:
        return True
    if command.program in BARRIER_PROGRAMS:
        return True
    # echo "@edge https://..." >> /etc/apk/repositories
    return "apk" in dockerfile.text[body.raw_start(item) : body.raw_end(item)]


def _group_name(
    dockerfile: Dockerfile, body: Body, bodies: dict[int, list[Body]], default: str
) -> str:
    """Return ``default`` unless a group of that name is alive or used here."""
    alive: set[str] = set()
    instruction = body.instruction
    for earlier in _stage_chain(dockerfile, instruction):
        if earlier.index >= instruction.index:
            break
        for earlier_body in bodies.get(earlier.index, []):
            for call in earlier_body.calls:
                if call.action == "add" and call.group:
                    alive.add(call.group)
                elif call.action == "del":
                    alive -= {word.value or "" for word in call.packages}
    used = {
        word.value
        for call in body.calls
        for word in call.command.words
        if word.value is not None
    }
    name, number = default, 2
    while name in alive or name in used:
        name = f"{default}-{number}"
        number += 1
    return name


def _stage_chain(dockerfile: Dockerfile, instruction: Instruction) -> list[Instruction]:
    """Return the instructions of the stage and the stages it is built from."""
    if instruction.stage < 0:
        return []
    chain: list[Stage] = []
    stage: Stage | None = dockerfile.stages[instruction.stage]
    seen: set[int] = set()
    while stage is not None and stage.index not in seen:
        seen.add(stage.index)
        chain.append(stage)
        stage = dockerfile.parent_stage(stage)
    return [
        earlier
        for stage in reversed(chain)
        for earlier in stage.instructions
        if earlier.effective_keyword == "RUN"
    ]


def _group_edits(
    dockerfile: Dockerfile,
    body: Body,
    call: ApkCall,
    builds: list[tuple[ApkCall, list[Word]]],
    plan: Plan,
    group: str,
    wants_no_cache: bool,
) -> list[Edit] | Skip:
    line = dockerfile.line_of(call.command.start)
    comment_skip = Skip(NAME, line, "grouping would drop a comment")
    edits: list[Edit] = []
    host, host_words = builds[0]
    if plan.in_place:
        # RUN apk add gcc && make && apk del gcc: the add becomes the group.
        plain = wants_no_cache and not host.no_cache and not host.no_network
        flags = " --no-cache" if plain else ""
        anchor = host.subcommand
        next_word = _word_after(host.command, anchor)
        if next_word is not None and next_word.value == "--no-cache":
            # apk add --no-cache gcc: the group goes after the flag.
            anchor = next_word
        edits.append(insert(anchor.end, f"{flags} --virtual {group}"))
        extra = [word.text for _, words in builds[1:] for word in words]
        if extra:
            edits.append(insert(host.command.words[-1].end, " " + " ".join(extra)))
        rest = builds[1:]
        rest_indexes = plan.indexes[1:]
    else:
        edits.append(
            insert(
                body.raw_start(plan.items[plan.target]),
                _group_command(dockerfile, body, plan, builds, group, wants_no_cache),
            )
        )
        rest = builds
        rest_indexes = plan.indexes

    for (add, words), index in zip(rest, rest_indexes, strict=True):
        if _all_build(add, words):
            item, following = plan.items[index], plan.items[index + 1]
            start, end = body.raw_start(item), body.raw_start(following)
            if _has_comment(dockerfile.text[start:end]):
                # TODO: an add whose lines hold a comment is not removed, so
                # the comment is kept; the RUN is left as it is. Removing it
                # needs the comment lines left in place around the gap.
                return comment_skip
            edits.append(Edit(start, end, ""))
            continue
        removed = {
            position for position, word in enumerate(add.command.words) if word in words
        }
        removal = _remove_words(dockerfile, add.command.words, removed)
        if removal is None:
            # TODO: apk add libpq \ / # compiler / gcc && ...: taking gcc out
            # would take the comment line before it too, so the RUN is left
            # as it is; keeping it needs a removal that skips comment lines.
            return comment_skip
        edits.extend(removal)
        if wants_no_cache and not add.no_cache and not add.no_network:
            edits.append(insert(add.subcommand.end, " --no-cache"))

    deleted = {_package_name(word.value) for _, words in builds for word in words}
    matched = [
        position
        for position, word in enumerate(call.command.words)
        if word in call.packages and _package_name(word.value) in deleted
    ]
    edits.append(
        replace(
            call.command.words[matched[0]].start,
            call.command.words[matched[0]].end,
            group,
        )
    )
    removal = _remove_words(dockerfile, call.command.words, set(matched[1:]))
    if removal is None:
        return comment_skip
    edits.extend(removal)
    return edits


def _word_after(command: Command, word: Word) -> Word | None:
    words = command.words
    position = words.index(word)
    return words[position + 1] if position + 1 < len(words) else None


def _group_command(
    dockerfile: Dockerfile,
    body: Body,
    plan: Plan,
    builds: list[tuple[ApkCall, list[Word]]],
    group: str,
    wants_no_cache: bool,
) -> str:
    """Return the new group add and the separator that follows it."""
    host = builds[0][0]
    command = host.command
    prefix = dockerfile.text[command.start : command.words[0].start]
    parts = [prefix + command.words[0].text, "add"]
    if wants_no_cache:
        parts.append("--no-cache")
    parts.extend(_option_key(host))
    parts.extend(["--virtual", group])
    parts.extend(word.text for _, words in builds for word in words)
    item = plan.items[plan.target]
    following = plan.items[plan.target + 1]
    separator = dockerfile.text[body.raw_end(item) : body.raw_start(following)]
    if _has_comment(separator):
        separator = _plain_separator(dockerfile, item.operator, body, item)
    return " ".join(parts) + separator


def _plain_separator(
    dockerfile: Dockerfile, operator: str, body: Body, item: Item
) -> str:
    if operator == "&&":
        return " && "
    if operator == ";":
        return "; "
    line = dockerfile.line_of(body.raw_start(item))
    return dockerfile.newline + dockerfile.indentation(line)


def _remove_words(
    dockerfile: Dockerfile, words: Sequence[Word], removed: set[int]
) -> list[Edit] | None:
    """Return edits deleting ``words[i]`` for i in ``removed``; None if unsafe.

    Removed words are taken a line at a time. A line they fill (apart from
    its indentation and continuation) goes whole; otherwise they go with
    the space that joins them to a kept word. None when a span would hold
    a comment.
    """
    text = dockerfile.text
    spans: list[tuple[int, int]] = []
    for first, last in _line_runs(dockerfile, words, removed):
        start_word, end_word = words[first], words[last]
        line = dockerfile.line_of(start_word.start)
        line_start = dockerfile.line_starts[line]
        before = text[line_start : start_word.start]
        after = text[end_word.end : dockerfile.line_end(line)]
        same_line = dockerfile.line_of(words[first - 1].end) == line
        following = words[last + 1] if last + 1 < len(words) else None
        if (
            not before.strip(" \t")
            and after.strip(" \t") == dockerfile.escape
            and line + 1 < len(dockerfile.lines)
        ):
            #     gcc musl-dev \      <- the whole line goes
            spans.append((line_start, dockerfile.line_starts[line + 1]))
        elif same_line:
            spans.append((words[first - 1].end, end_word.end))
        elif following is not None and dockerfile.line_of(following.start) == line:
            spans.append((start_word.start, following.start))
        else:
            kept = max(index for index in range(first) if index not in removed)
            spans.append((words[kept].end, end_word.end))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    if any(_has_comment(text[start:end]) for start, end in merged):
        return None
    return [Edit(start, end, "") for start, end in merged]


def _line_runs(
    dockerfile: Dockerfile, words: Sequence[Word], removed: set[int]
) -> Iterator[tuple[int, int]]:
    """Yield (first, last) indexes of removed words next to each other."""
    index = 0
    while index < len(words):
        if index not in removed:
            index += 1
            continue
        last = index
        line = dockerfile.line_of(words[index].start)
        while last + 1 in removed and dockerfile.line_of(words[last + 1].start) == line:
            last += 1
        yield index, last
        index = last + 1


def _has_comment(text: str) -> bool:
    return any(COMMENT_RE.search(segment) for segment in text.splitlines())
