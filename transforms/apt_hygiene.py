r"""Make apt-get installs non-interactive, lean and free of package lists.

What it does:
    Works on the sh scripts of RUN instructions (shell form, ONBUILD RUN and
    RUN <<EOF scripts), in every stage:
    - apt-get install (and apt install) gets -y and --no-install-recommends
      right after install when it has no spelling of them yet (-y, --yes,
      --assume-yes, -qq, -yq, --force-yes; --no-install-recommends, -o
      APT::Install-Recommends=false or =0). An explicit
      --install-recommends or APT::Install-Recommends=true is kept.
    - A RUN that runs apt-get update, or installs while lists an earlier
      RUN fetched are still there, gets rm -rf /var/lib/apt/lists/* at its
      end unless it already removes them after its last update (any rm of
      /var/lib/apt/lists, apt-get dist-clean), mounts a cache or tmpfs over
      /var/lib/apt, ends with the update (the lists are for the next RUN),
      or a later RUN of the stage, or of a stage built from it, installs
      without updating (that RUN is reported as skipped). A one-line RUN
      gets " && rm ..."; a multi-line RUN gets a new
      continuation line in its own style: "&&" at line ends or at line
      starts, or "; \" for a "set -e" script joined by ";". A RUN <<EOF
      script under set -e gets a new line before its terminator.
    - A RUN whose only command is apt-get update, followed by a RUN that
      installs (comments between are fine), is merged into it: the lone
      RUN is removed and "apt-get update && " starts the install RUN
      (nothing is added when that RUN updates already).
    - apt becomes apt-get for install, update, upgrade, dist-upgrade,
      remove, autoremove, purge, clean and autoclean. apt upgrade becomes
      apt-get upgrade --with-new-pkgs, which is what apt upgrade does.
      apt list, show, search and the like have no apt-get form and stay.
    aptitude, apt-get inside quotes or sh -c '...', JSON-form RUNs and
    RUNs under a non-POSIX shell are left alone.

Why:
    Without -y, apt-get install stops at its confirmation prompt and the
    build fails as soon as a dependency is pulled in. Recommended packages
    often double an image's size. The package lists fetched by update take
    tens of megabytes; removed in a later RUN they still sit in the layer
    that fetched them. A separate update RUN is cached on its own, so an
    install RUN changed months later installs from stale lists. apt warns
    that its command line is not stable for scripts; apt-get's is.

Example:
    Before:
        FROM debian:bookworm-slim
        RUN apt update \
            && apt install curl
    After:
        FROM debian:bookworm-slim
        RUN apt-get update \
            && apt-get install -y --no-install-recommends curl \
            && rm -rf /var/lib/apt/lists/*

Fix safety:
    Safe for -y, the lists clean-up, the update merge and apt to apt-get,
    except where noted; unsafe (review) for --no-install-recommends. -y
    only answers a prompt a build cannot answer. The lists are read only
    by apt itself: an image built FROM this one must run apt-get update
    before it installs, as it must on the official Debian images. Dropping
    recommended packages changes what is installed: a program that needs
    one of them at run time fails later, so the fix carries a note. It is
    marked safe when the stage already turned recommends off in an
    apt.conf.d file, or the call only simulates (-s). apt install and
    apt upgrade delete downloaded .deb files where apt-get keeps them in
    /var/cache/apt/archives, so that change is marked review unless the
    same RUN clears that cache (official Debian and Ubuntu images also
    clear it through their docker-clean hook).

Known gaps:
    - An install of a cross compiler (gcc-aarch64-linux-gnu,
      crossbuild-essential-arm64) keeps its recommended packages: the
      target's libc comes only as a recommendation.
    - A later RUN that installs through a script (RUN ./install.sh) is not
      read: if the script runs apt-get install without apt-get update, the
      added clean-up breaks it.
    - apt-get options held in a variable ($APT_OPTS) leave that call alone.
    - JSON-form RUNs and RUNs under powershell or cmd are reported as
      skipped.
    - A lone update RUN is not merged when anything but comments sits
      before the install RUN, when it has flags (--mount) the install RUN
      lacks, or when the install RUN is a heredoc, has several ;-joined
      commands without set -e, or is in JSON form; each is reported.
    - A RUN whose script ends in a background job (&), a heredoc, exit or
      exec, or does not parse, gets no clean-up and is reported.
    - A RUN that feeds a heredoc to another program (RUN cat <<EOF > f &&
      apt-get ...) is not read at all.

References:
    hadolint DL3014, DL3015, DL3009, DL3027.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter

from fixer.edits import Edit, Finding, Fix, Safety, Settings, Skip, insert, replace
from fixer.parse import Dockerfile, Instruction, Stage
from fixer.shell import Command, Script, Word, scripts_of

NAME = "apt-hygiene"
SAFETY = Safety.UNSAFE

CLEANUP = "rm -rf /var/lib/apt/lists/*"
APT_PROGRAMS = frozenset({"apt-get", "apt"})
# apt subcommands that mean the same under apt-get.
APT_GET_SUBCOMMANDS = frozenset(
    {
        "install",
        "update",
        "upgrade",
        "dist-upgrade",
        "remove",
        "autoremove",
        "purge",
        "clean",
        "autoclean",
    }
)
# What apt implies that apt-get needs said: apt upgrade may add packages.
APT_IMPLIED_OPTIONS = {"upgrade": "--with-new-pkgs"}
# Subcommands after which apt deletes the .deb files it downloaded.
DOWNLOADING = frozenset({"install", "upgrade", "dist-upgrade"})
# Subcommands that read the package lists.
LIST_READERS = frozenset(
    {
        "install",
        "upgrade",
        "dist-upgrade",
        "full-upgrade",
        "build-dep",
        "reinstall",
        "satisfy",
        "source",
        "download",
    }
)
# apt-get options whose value is the next word: apt-get -o X=1 install.
OPTIONS_WITH_VALUE = frozenset(
    {
        "-o",
        "-c",
        "-t",
        "-a",
        "-P",
        "--option",
        "--config-file",
        "--target-release",
        "--default-release",
        "--host-architecture",
        "--build-profiles",
    }
)
NO_ACTION_OPTIONS = frozenset(
    {"--simulate", "--just-print", "--dry-run", "--recon", "--no-act"}
)
YES_LONG_OPTIONS = ("--yes", "--assume-yes", "--force-yes")
# Short option letters of apt-get that take no value, so "-yq" is a
# cluster of -y and -q and "-tbookworm" is not.
SHORT_FLAG_LETTERS = frozenset("yqdfsmubVh")
OPTIONS_VARIABLE_RE = re.compile(r"\$\{?\w*(OPT|FLAG|ARG)", re.IGNORECASE)
APT_MOUNT_TARGET_RE = re.compile(
    r"""(?:^|,)(?:target|dst|destination)=  # the mount's target key
        /var/lib/apt(/|,|$)                 # /var/lib/apt or a path under it
    """,
    re.VERBOSE,
)
# Cross compilers whose target libc is only a recommended package.
CROSS_TOOLCHAIN_RE = re.compile(
    r"""^(?:(?:gcc|g\+\+|cpp|gfortran|gccgo)(?:-\d+)?  # gcc, g++-12, ...
          -[a-z0-9_]+(?:-[a-z0-9_]+)*-linux-gnu\w*     # -aarch64-linux-gnu
        |crossbuild-essential-\w+)(?::\w+)?$""",
    re.VERBOSE,
)
RECOMMENDS_OFF_RE = re.compile(r"Install-Recommends\W+(0|false)", re.IGNORECASE)
# A removal of the lists in an earlier RUN's text, read loosely.
LISTS_REMOVED_RE = re.compile(
    r"""/var/lib/apt/lists        # rm -rf /var/lib/apt/lists/*
        |/var/lib/apt/?\*?(\s|$)  # rm -rf /var/lib/apt
        |dist-?clean              # apt-get dist-clean
    """,
    re.VERBOSE,
)
CACHE_CLEARED_RE = re.compile(r"/var/cache/apt")
SET_ERREXIT_RE = re.compile(r"-[a-zA-Z]*e[a-zA-Z]*")
# A mention of apt in text that is not read as commands (JSON form, cmd).
APT_MENTION_RE = re.compile(r"(?<![\w/.-])apt(-get)?(?![\w.-])")
# An apt call in a later RUN's text, read loosely: the first word that is
# not an option is the subcommand.
APT_CALL_RE = re.compile(
    r"""(?<![\w.-])(?:\S*/)?               # start of a word, maybe a path
        (?:apt-get|apt|aptitude|apt-cache)  # the program
        (?:\s+(?:-[octaP]|--option|--target-release|--default-release)
           \s+\S+                           # an option and its value
         |\s+-\S+)*                         # or an option alone
        \s+(?P<subcommand>[a-z][a-z-]*)     # the subcommand
    """,
    re.VERBOSE,
)
NOTE_RECOMMENDS = (
    "recommended packages are no longer installed: run the image's tests; "
    "if something fails, 'apt-cache depends --recommends <package>' lists "
    "what it recommended, and any needed package goes on the install line"
)
NOTE_KEEPS_DEBS = (
    "apt deleted the .deb files it downloaded and apt-get keeps them: "
    "check /var/cache/apt/archives is empty in the image, or add "
    "apt-get clean"
)


@dataclass(frozen=True)
class AptCall:
    """One apt-get or apt command and where its subcommand word is."""

    command: Command
    script: Script
    subcommand: Word
    subcommand_index: int


def find_fixes(dockerfile: Dockerfile, settings: Settings) -> Iterator[Finding]:
    merged: set[int] = set()
    for instruction in dockerfile.instructions:
        if instruction.effective_keyword != "RUN":
            continue
        if instruction.is_json_form or not dockerfile.is_posix_shell(instruction):
            # TODO: a JSON-form RUN (RUN ["apt-get", "install", "x"]) is only
            # reported: fixer/shell.py reads shell text, and editing the array
            # needs a splitter that keeps its JSON quoting. cmd and powershell
            # RUNs are not sh, so their text is never edited.
            if APT_MENTION_RE.search(instruction.original):
                reason = (
                    "RUN in JSON form"
                    if instruction.is_json_form
                    else "RUN is not run by sh"
                )
                yield Skip(NAME, instruction.first_line, reason)
            continue
        if instruction.index in merged:
            continue
        scripts = scripts_of(dockerfile, instruction)
        if not scripts:
            continue
        merge = _merge_lone_update(dockerfile, instruction, scripts)
        if merge is not None:
            yield merge
            if isinstance(merge, Fix):
                merged.add(instruction.index)
                continue
        calls = [call for script in scripts for call in _apt_calls(script)]
        for call in calls:
            yield from _command_fixes(dockerfile, instruction, call)
        yield from _lists_fixes(dockerfile, instruction, scripts, calls)


# -- the lone apt-get update RUN --------------------------------------------


def _merge_lone_update(
    dockerfile: Dockerfile, instruction: Instruction, scripts: list[Script]
) -> Finding | None:
    """Merge "RUN apt-get update" into the install RUN that follows it."""
    update = _lone_update(instruction, scripts)
    if update is None:
        return None
    following = _next_instruction(dockerfile, instruction)
    if following is None or not _installs(dockerfile, following):
        return Skip(NAME, instruction.first_line, "update RUN not followed by install")
    if following.trigger != instruction.trigger or following.heredocs:
        return Skip(NAME, instruction.first_line, "install RUN cannot take the update")
    if not set(instruction.flags) <= set(following.flags):
        return Skip(NAME, instruction.first_line, "update RUN has its own flags")
    target = scripts_of(dockerfile, following)[0]
    edits = _delete_instruction(dockerfile, instruction)
    if not _updates_before_install(target):
        position = _update_position(target)
        if position is None:
            return Skip(
                NAME, instruction.first_line, "install RUN cannot take the update"
            )
        offset, separator = position
        text = update.script.logical.text
        command = text[update.command.logical_start : update.command.logical_end]
        edits += (insert(offset, f"{command}{separator} "),)
    return Fix(
        transform=NAME,
        line=instruction.first_line,
        problem="apt-get update runs in a RUN of its own",
        action="merge it into the install RUN",
        edits=edits,
        safety=Safety.SAFE,
    )


def _lone_update(instruction: Instruction, scripts: list[Script]) -> AptCall | None:
    """Return the update call of a RUN whose only command is apt-get update."""
    if instruction.heredocs or len(scripts) != 1:
        return None
    script = scripts[0]
    statements = _statements(script.root)
    if script.has_error or len(statements) != 1 or statements[0].type != "command":
        return None
    calls = _apt_calls(script)
    if len(script.commands) != 1 or len(calls) != 1:
        return None
    call = calls[0]
    if call.subcommand.value != "update":
        return None
    rest = call.command.arguments[call.subcommand_index + 1 :]
    if any(word.value is None or not word.value.startswith("-") for word in rest):
        return None
    return call


def _next_instruction(
    dockerfile: Dockerfile, instruction: Instruction
) -> Instruction | None:
    index = instruction.index + 1
    if index >= len(dockerfile.instructions):
        return None
    return dockerfile.instructions[index]


def _installs(dockerfile: Dockerfile, instruction: Instruction) -> bool:
    if instruction.effective_keyword != "RUN" or instruction.is_json_form:
        return False
    if not dockerfile.is_posix_shell(instruction):
        return False
    return any(
        call.subcommand.value == "install"
        for script in scripts_of(dockerfile, instruction)
        for call in _apt_calls(script)
    )


def _updates_before_install(script: Script) -> bool:
    for call in _apt_calls(script):
        if call.subcommand.value == "update":
            return True
        if call.subcommand.value == "install":
            return False
    return False


def _update_position(script: Script) -> tuple[int, str] | None:
    """Return where "apt-get update" goes in the install RUN, and after it.

    A single statement takes "apt-get update && " in front. A script that
    starts with set -e and goes on with ";" takes "apt-get update; " after
    the set, since under set -e a failing command left of && does not stop
    the script.
    """
    statements = _statements(script.root)
    if script.has_error or not statements:
        return None
    if len(statements) == 1:
        return _raw_start(script, statements[0]), " &&"
    if _is_set_errexit(script, statements[0]):
        # RUN set -eux; apt-get install -y curl
        return _raw_start(script, statements[1]), ";"
    # TODO: RUN a; apt-get install x without set -e: "apt-get update && a; b"
    # would let b run after a failed update, so the merge is skipped; it
    # would need the script wrapped in { ...; }.
    return None


def _delete_instruction(
    dockerfile: Dockerfile, instruction: Instruction
) -> tuple[Edit, ...]:
    """Delete a RUN's lines, keeping comment lines inside its continuation.

    A blank line after it goes too when the line before is blank or a
    comment, so a comment above the RUN ends up above the install RUN.
    """
    edits = []
    start: int | None = None
    for line in range(instruction.first_line, instruction.last_line + 1):
        is_comment = line > instruction.first_line and dockerfile.line_text(
            line
        ).lstrip(" \t").startswith("#")
        if is_comment and start is not None:
            edits.append(replace(start, dockerfile.line_starts[line], ""))
            start = None
        elif not is_comment and start is None:
            start = dockerfile.line_starts[line]
    end_line = instruction.last_line + 1
    if end_line < len(dockerfile.lines) and not dockerfile.line_text(end_line).strip():
        before = instruction.first_line - 1
        text = dockerfile.line_text(before).strip() if before >= 0 else ""
        if not text or text.startswith("#"):
            end_line += 1
    if start is not None:
        end = (
            dockerfile.line_starts[end_line]
            if end_line < len(dockerfile.lines)
            else len(dockerfile.text)
        )
        edits.append(replace(start, end, ""))
    return tuple(edits)


# -- -y, --no-install-recommends and apt -> apt-get -------------------------


def _command_fixes(
    dockerfile: Dockerfile, instruction: Instruction, call: AptCall
) -> Iterator[Fix]:
    command, subcommand = call.command, call.subcommand
    if (
        command.program == "apt"
        and command.words[0].text.endswith("apt")
        and subcommand.value in APT_GET_SUBCOMMANDS
    ):
        yield _apt_get_fix(dockerfile, instruction, call)
    if subcommand.value != "install":
        return
    values = [word.value for word in command.arguments]
    # TODO: apt-get install $APT_OPTS x is left alone, since the variable may
    # hold -y or --no-install-recommends; reading its ENV or ARG value would
    # settle it.
    if any(
        word.value is None and OPTIONS_VARIABLE_RE.search(word.text)
        for word in command.arguments
    ):
        return
    known = [value for value in values if value is not None]
    if not any(_is_yes_option(value) for value in known):
        yield Fix(
            transform=NAME,
            line=dockerfile.line_of(subcommand.start),
            problem="apt-get install can stop at its confirmation prompt",
            action="add -y",
            edits=(replace(subcommand.start, subcommand.end, f"{subcommand.text} -y"),),
            safety=Safety.SAFE,
        )
    if any(CROSS_TOOLCHAIN_RE.match(value) for value in known):
        # gcc-aarch64-linux-gnu brings its target's libc (libc6-dev-arm64-
        # cross) only as a recommendation: without it, linking fails.
        return
    if not any("install-recommends" in value.lower() for value in known):
        # Nothing changes when recommends are off in apt.conf already, or
        # when the call only simulates (apt-get install -s x).
        same = _recommends_off_in_stage(dockerfile, instruction) or any(
            _is_no_action_option(value) for value in known
        )
        anchor = _recommends_anchor(dockerfile, call)
        yield Fix(
            transform=NAME,
            line=dockerfile.line_of(subcommand.start),
            problem="apt-get install adds recommended packages",
            action="add --no-install-recommends",
            edits=(insert(anchor.end, " --no-install-recommends"),),
            safety=Safety.SAFE if same else Safety.UNSAFE,
            note="" if same else NOTE_RECOMMENDS,
        )


def _recommends_anchor(dockerfile: Dockerfile, call: AptCall) -> Word:
    """Return the word --no-install-recommends goes after.

    That is install itself, or a yes option right after it on the same line,
    so "install -y curl" becomes "install -y --no-install-recommends curl".
    """
    subcommand = call.subcommand
    following = call.command.arguments[call.subcommand_index + 1 :]
    if not following or following[0].value is None:
        return subcommand
    word = following[0]
    if _is_yes_option(word.value or "") and dockerfile.line_of(
        word.start
    ) == dockerfile.line_of(subcommand.start):
        return word
    return subcommand


def _apt_get_fix(
    dockerfile: Dockerfile, instruction: Instruction, call: AptCall
) -> Fix:
    program = call.command.words[0]
    # The program word is literal "apt" or a path ending in it.
    edits = [replace(program.end - len("apt"), program.end, "apt-get")]
    subcommand = call.subcommand
    option = APT_IMPLIED_OPTIONS.get(subcommand.value or "")
    values = [word.value or "" for word in call.command.arguments]
    if option and not any("new-pkgs" in value for value in values):
        edits.append(insert(subcommand.end, f" {option}"))
    keeps_debs = subcommand.value in DOWNLOADING and not _clears_archives(
        call.script, call.command
    )
    return Fix(
        transform=NAME,
        line=dockerfile.line_of(program.start),
        problem="apt has no stable command-line interface",
        action="use apt-get",
        edits=tuple(edits),
        safety=Safety.UNSAFE if keeps_debs else Safety.SAFE,
        note=NOTE_KEEPS_DEBS if keeps_debs else "",
    )


def _is_no_action_option(value: str) -> bool:
    if value in NO_ACTION_OPTIONS:
        return True
    letters = value[1:]
    return (
        value.startswith("-")
        and not value.startswith("--")
        and set(letters) <= SHORT_FLAG_LETTERS
        and "s" in letters
    )


def _is_yes_option(value: str) -> bool:
    if value.startswith(YES_LONG_OPTIONS) or "assume-yes" in value.lower():
        return True
    if value in ("-q=2", "--quiet=2"):
        return True
    if value.startswith("--") or not value.startswith("-"):
        return False
    letters = value[1:]
    if not letters or not set(letters) <= SHORT_FLAG_LETTERS:
        return False
    # apt-get -qq implies -y.
    return "y" in letters or letters.count("q") >= 2


def _recommends_off_in_stage(dockerfile: Dockerfile, instruction: Instruction) -> bool:
    """Tell whether an earlier RUN wrote Install-Recommends "0" to apt.conf."""
    if not dockerfile.mentions("recommends", ignore_case=True):
        return False
    for earlier in _stage_chain_before(dockerfile, instruction):
        if earlier.effective_keyword == "RUN" and RECOMMENDS_OFF_RE.search(
            dockerfile.text[earlier.start : earlier.end]
        ):
            return True
    return False


def _clears_archives(script: Script, after: Command) -> bool:
    """Tell whether the script clears /var/cache/apt after ``after``."""
    for command in script.commands:
        if command.logical_start <= after.logical_start:
            continue
        if command.program in APT_PROGRAMS and any(
            value in ("clean", "autoclean", "distclean", "dist-clean")
            for value in command.values()
        ):
            return True
        if command.program in ("rm", "find") and any(
            CACHE_CLEARED_RE.search(word.text) for word in command.arguments
        ):
            return True
    return False


# -- the package lists ------------------------------------------------------


def _lists_fixes(
    dockerfile: Dockerfile,
    instruction: Instruction,
    scripts: list[Script],
    calls: list[AptCall],
) -> Iterator[Finding]:
    script = scripts[0]
    own = [call for call in calls if call.script is script]
    updates = [call for call in own if call.subcommand.value == "update"]
    installs = [call for call in own if call.subcommand.value in LIST_READERS]
    if not updates and not (installs and _lists_left(dockerfile, instruction)):
        return
    if _ends_with_update(script, updates):
        return
    if _has_apt_mount(instruction) or _removes_lists(script, updates):
        return
    if _later_run_reads_lists(dockerfile, instruction):
        yield Skip(NAME, instruction.first_line, "a later RUN needs the apt lists")
        return
    edit = _cleanup_edit(dockerfile, instruction, script)
    if edit is None:
        yield Skip(NAME, instruction.first_line, "end of the RUN script is unclear")
        return
    yield Fix(
        transform=NAME,
        line=dockerfile.line_of(edit.start),
        problem="apt package lists stay in the image layer",
        action="remove them at the end of the RUN",
        edits=(edit,),
        safety=Safety.SAFE,
    )


def _ends_with_update(script: Script, updates: list[AptCall]) -> bool:
    # RUN apt-get update: the lists are for the next RUN.
    return bool(updates) and script.commands[-1] is updates[-1].command


def _has_apt_mount(instruction: Instruction) -> bool:
    # RUN --mount=type=cache,target=/var/lib/apt,sharing=locked apt-get ...
    return any(
        flag.startswith("--mount=") and APT_MOUNT_TARGET_RE.search(flag)
        for flag in instruction.flags
    )


def _removes_lists(script: Script, updates: list[AptCall]) -> bool:
    """Tell whether the script removes the lists after its last update."""
    start = updates[-1].command.logical_start if updates else -1
    for command in script.commands:
        if command.logical_start <= start:
            continue
        if command.program in APT_PROGRAMS and any(
            value in ("distclean", "dist-clean") for value in command.values()
        ):
            return True
        for word in command.arguments:
            path = word.text.strip("'\"")
            if "/var/lib/apt/lists" in path or path.rstrip("/*") == "/var/lib/apt":
                return True
    return False


def _later_run_reads_lists(dockerfile: Dockerfile, instruction: Instruction) -> bool:
    """Tell whether a later RUN reads the lists before it runs apt-get update.

    Later means after this RUN in its stage, then in each stage built from
    it; ONBUILD RUNs count. A RUN that updates first refreshes the lists
    for everything after it. The text is read loosely, so a call inside
    quotes (sh -c 'apt-get install x') counts too.
    """
    if instruction.stage < 0:
        return False
    return _stage_reads_lists(
        dockerfile, dockerfile.stages[instruction.stage], instruction.index, set()
    )


def _stage_reads_lists(
    dockerfile: Dockerfile, stage: Stage, after: int, seen: set[int]
) -> bool:
    seen.add(stage.index)
    for later in stage.instructions:
        if later.index <= after or later.effective_keyword != "RUN":
            continue
        first = _first_list_use(_code_text(dockerfile, later))
        if first == "update":
            return False
        if first == "read":
            return True
    return any(
        _stage_reads_lists(dockerfile, child, after, seen)
        for child in dockerfile.stages[stage.index + 1 :]
        if child.index not in seen and dockerfile.parent_stage(child) is stage
    )


def _first_list_use(text: str) -> str | None:
    """Return "update" or "read" for the first apt call that uses the lists."""
    for match in APT_CALL_RE.finditer(text):
        subcommand = match["subcommand"]
        if subcommand == "update":
            return "update"
        if subcommand in LIST_READERS or match[0].startswith("apt-cache"):
            return "read"
    return None


def _lists_left(dockerfile: Dockerfile, instruction: Instruction) -> bool:
    """Tell whether an earlier RUN of the stage left fetched lists behind."""
    left = False
    for earlier in _stage_chain_before(dockerfile, instruction):
        effect = _lists_effect(dockerfile, earlier)
        if effect is not None:
            left = effect
    return left


def _lists_effect(dockerfile: Dockerfile, instruction: Instruction) -> bool | None:
    """Return True when a RUN leaves fetched lists, False when it removes
    them, None when it does neither; cached, since every later install asks."""
    cache = dockerfile.cache.setdefault("apt_lists_effect", {})
    assert isinstance(cache, dict)
    if instruction.index in cache:
        effect: bool | None = cache[instruction.index]
        return effect
    effect = None
    if instruction.effective_keyword == "RUN" and not _has_apt_mount(instruction):
        text = _code_text(dockerfile, instruction)
        updates = [
            match.end()
            for match in APT_CALL_RE.finditer(text)
            if match["subcommand"] == "update"
        ]
        removals = [match.end() for match in LISTS_REMOVED_RE.finditer(text)]
        if updates and (not removals or removals[-1] < updates[-1]):
            effect = True
        elif removals:
            effect = False
    cache[instruction.index] = effect
    return effect


def _code_text(dockerfile: Dockerfile, instruction: Instruction) -> str:
    lines = dockerfile.text[instruction.start : instruction.end].splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _cleanup_edit(
    dockerfile: Dockerfile, instruction: Instruction, script: Script
) -> Edit | None:
    """Return the edit that appends the clean-up to the end of the script."""
    statements = _statements(script.root)
    if script.has_error or not statements:
        return None
    last = statements[-1]
    # TODO: a script that ends in a background job (x &), a heredoc
    # (cat <<EOF > f) or exit/exec gets no clean-up, since no place after its
    # last command surely runs; such RUNs are reported as skipped.
    if _has_node(last, ("heredoc_body", "heredoc_redirect")):
        return None
    trailing = _children_after(script.root, last)
    if any(node.type == "&" for node in trailing) or _ends_script(script, last):
        return None
    logical = script.logical
    end = logical.raw(_char_offset(logical.text, last.end_byte))
    errexit = any(_is_set_errexit(script, statement) for statement in statements)
    semicolons = errexit and len(statements) > 1 and last.type != "list"

    if instruction.heredocs:
        if not errexit:
            # Without set -e the script's status is its last command's; a new
            # last line would hide a failed install.
            return insert(end, f" && {CLEANUP}")
        heredoc = instruction.heredocs[0]
        body_last = dockerfile.line_of(max(heredoc.body_start, heredoc.body_end - 1))
        indent = dockerfile.indentation(body_last)
        return insert(heredoc.body_end, f"{indent}{CLEANUP}{dockerfile.newline}")

    separator = ";" if semicolons else " &&"
    if instruction.first_line == instruction.last_line:
        return insert(end, f"{separator} {CLEANUP}")

    escape, newline = dockerfile.escape, dockerfile.newline
    semicolon = next((node for node in trailing if node.type == ";"), None)
    if semicolons and semicolon is not None:
        # Docker official images end the list with a line holding only ";":
        #     apt-get install -y --no-install-recommends curl \
        #     ; \
        #     rm -rf /var/lib/apt/lists/*
        after = logical.raw(_char_offset(logical.text, semicolon.end_byte))
        line = dockerfile.line_of(after)
        if line != dockerfile.line_of(end):
            indent = dockerfile.indentation(line)
            return insert(after, f" {escape}{newline}{indent}{CLEANUP}")
    indent = _new_line_indent(dockerfile, instruction, script, last)
    if separator == " &&" and _leads_with_operators(dockerfile, instruction):
        return insert(end, f" {escape}{newline}{indent}&& {CLEANUP}")
    return insert(end, f"{separator} {escape}{newline}{indent}{CLEANUP}")


def _ends_script(script: Script, last: tree_sitter.Node) -> bool:
    # RUN apt-get install -y x && exec app: nothing after it would run.
    node = _rightmost(last)
    if node.type != "command" or not node.named_children:
        return False
    return _node_text(script, node.named_children[0]) in ("exit", "exec")


def _rightmost(node: tree_sitter.Node) -> tree_sitter.Node:
    while node.type == "list" and node.named_children:
        node = node.named_children[-1]
    return node


def _new_line_indent(
    dockerfile: Dockerfile,
    instruction: Instruction,
    script: Script,
    last: tree_sitter.Node,
) -> str:
    """Return the indentation of the line the last command starts on."""
    line = dockerfile.line_of(_raw_start(script, _rightmost(last)))
    if line == instruction.first_line:
        line = instruction.last_line
        while line > instruction.first_line and dockerfile.line_text(
            line
        ).lstrip().startswith("#"):
            line -= 1
    return dockerfile.indentation(line) or "    "


def _leads_with_operators(dockerfile: Dockerfile, instruction: Instruction) -> bool:
    """Tell whether the RUN puts && at line starts rather than line ends."""
    leading = trailing = 0
    for line in range(instruction.first_line, instruction.last_line + 1):
        text = dockerfile.line_text(line).strip()
        if text.startswith("#"):
            continue
        if text.startswith(("&&", "||")):
            leading += 1
        if text.removesuffix(dockerfile.escape).rstrip().endswith(("&&", "||")):
            trailing += 1
    return leading > trailing


# -- shared helpers ---------------------------------------------------------


def _apt_calls(script: Script) -> list[AptCall]:
    """Return the apt-get and apt commands of a script with their subcommand."""
    calls = []
    for command in script.commands:
        if command.program not in APT_PROGRAMS:
            continue
        arguments = command.arguments
        index = 0
        while index < len(arguments):
            value = arguments[index].value
            if value is None or not value.startswith("-"):
                break
            index += 2 if value in OPTIONS_WITH_VALUE else 1
        if index < len(arguments) and arguments[index].value is not None:
            calls.append(AptCall(command, script, arguments[index], index))
    return calls


def _statements(root: tree_sitter.Node) -> list[tree_sitter.Node]:
    return [node for node in root.named_children if node.type != "comment"]


def _children_after(
    root: tree_sitter.Node, node: tree_sitter.Node
) -> list[tree_sitter.Node]:
    return [child for child in root.children if child.start_byte >= node.end_byte]


def _has_node(node: tree_sitter.Node, types: tuple[str, ...]) -> bool:
    if node.type in types:
        return True
    return any(_has_node(child, types) for child in node.children)


def _is_set_errexit(script: Script, statement: tree_sitter.Node) -> bool:
    # set -e, set -eux, set -o errexit
    if statement.type != "command":
        return False
    words = [_node_text(script, child) for child in statement.named_children]
    if not words or words[0] != "set":
        return False
    options = words[1:]
    return any(SET_ERREXIT_RE.fullmatch(word) for word in options) or (
        "errexit" in options
    )


def _raw_start(script: Script, node: tree_sitter.Node) -> int:
    return script.logical.raw_start(_char_offset(script.logical.text, node.start_byte))


def _node_text(script: Script, node: tree_sitter.Node) -> str:
    text = script.logical.text
    return text[_char_offset(text, node.start_byte) : _char_offset(text, node.end_byte)]


def _char_offset(text: str, byte_offset: int) -> int:
    """Return the character offset of a UTF-8 byte offset into ``text``."""
    if text.isascii():
        return byte_offset
    return len(text.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


def _stage_chain_before(
    dockerfile: Dockerfile, instruction: Instruction
) -> list[Instruction]:
    """Return what ran before ``instruction``: parent stages, then its own."""
    if instruction.stage < 0:
        return []
    chain: list[Stage] = []
    stage: Stage | None = dockerfile.stages[instruction.stage]
    while stage is not None and stage not in chain:
        chain.append(stage)
        stage = dockerfile.parent_stage(stage)
    return [
        earlier
        for stage in reversed(chain)
        for earlier in stage.instructions
        if earlier.index < instruction.index
    ]
