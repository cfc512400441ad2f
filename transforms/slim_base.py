"""Switch the final stage's full base image tag to its slim variant.

What it does:
    Looks at the final stage's FROM and, when fixer/data/images.toml gives
    the image a slim variant, rewrites only the tag text with the image's
    own grammar: python 3.12-bookworm becomes 3.12-slim-bookworm and 3.12
    becomes 3.12-slim; node 20-bookworm becomes 20-bookworm-slim and 20
    becomes 20-slim; debian bookworm becomes bookworm-slim. --platform, the
    registry and its port, the alias and its case stay byte for byte. In
    python:${VERSION}-bookworm only the literal part changes; a tag set by
    an ARG before the first FROM (ARG BASE=python:3.12) is changed there
    when no other stage uses that ARG.

    The full tags of python, node, ruby, rust, perl and openjdk carry
    compilers, headers and tools that the slim tags lack. When the stage's
    RUNs use a compiler or build tool (gcc, make, ./configure), install
    -dev packages without a compiler, pip-install packages that always
    build from source (psycopg2, mysqlclient, uwsgi), or install language
    packages at all (pip, python -m pip, uv, pipenv, poetry, npm ci or
    install, yarn, pnpm, gem, bundle, composer) without installing a
    compiler themselves (and python3 too, for node-gyp), the tag is left
    alone with a skip reason suggesting a multi-stage build. When they
    only use up to three standalone tools (git, curl, wget, unzip, gpg,
    ssh) that the stage does not install, the switch is made and one RUN
    after FROM installs those packages with ca-certificates; HEALTHCHECK,
    CMD and ENTRYPOINT count as users too.

    Never switched, with a skip reason: a stage with ONBUILD triggers (child
    images run them, pip or npm installs included, and need the full
    image), a digest-pinned FROM, a FROM whose whole image is an ARG shared
    by several stages or whose RUNs branch on the distro (read
    /etc/os-release or ID=, or use two package managers), a final stage
    built FROM another stage, one that other stages build on, and dev
    containers (a path under .devcontainer, a file named
    *dev-container.dockerfile, or an image under
    mcr.microsoft.com/devcontainers or its vscode/devcontainers
    predecessor), whose images keep their tools on purpose. An Alpine
    variant is used only with the option allow-alpine = true and only for
    images without a Debian slim variant, and never for a stage using
    apt-get.

Why:
    A full python or node image is several hundred megabytes larger than
    its slim variant, mostly compilers and headers the running application
    never uses. Each of them is also attack surface and scanner noise in
    every deployed copy of the image.

Example:
    Before:
        FROM python:3.12-bookworm
        COPY app.py /app.py
        CMD ["python", "/app.py"]
    After:
        FROM python:3.12-slim-bookworm
        COPY app.py /app.py
        CMD ["python", "/app.py"]

Fix safety:
    Unsafe. The slim image lacks compilers, -dev headers and many tools.
    Stages that install language packages are skipped, but a script run by
    the container (or by a RUN) may still call a tool that is gone.

Known gaps:
    - Requirements files, package.json and Gemfiles are not read, so any
      pip, npm, yarn, gem, bundle or composer install on a full image is
      skipped, even when every package is pure Python or JavaScript. A
      multi-stage build is the way to a slim final image there.
    - Scripts copied into the image and run by RUN are not read.
    - Tags set by --build-arg without a default are left alone.
    - ARG IMAGE=debian:10 / FROM ${IMAGE} is skipped whenever a RUN anywhere
      in the file reads the distro, even if that RUN only prints it.
    - Dev containers are found by path and image name only; one kept
      elsewhere under another name is treated like any other image.
    - An image with ONBUILD triggers is skipped even when the triggers only
      copy files: whether a child build needs compilers is not visible.

References:
    Docker Official Images: the python and node image variants.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator

from fixer.edits import (
    Edit,
    Finding,
    Fix,
    Safety,
    Settings,
    Skip,
    insert,
    insert_lines_after,
    replace,
)
from fixer.images import (
    ImageRef,
    KnownImage,
    lookup,
    parse_image_ref,
    resolve_variables,
)
from fixer.parse import Dockerfile, Instruction, Stage
from fixer.shell import scripts_of
from fixer.stages import dependents, final_stage, package_manager_used, parent_of

NAME = "slim-base"
SAFETY = Safety.UNSAFE

MAX_ADDED_PACKAGES = 3
NETWORK_TOOLS = frozenset({"git", "curl", "wget", "mercurial", "subversion"})
PIP_RE = re.compile(r"pip(\d+(\.\d+)?)?")
REQUIREMENT_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+")
NATIVE_CODE_REASON = (
    "installs packages that may build native code; consider multi-stage"
)
# Package managers and the subcommands that install packages. An empty
# subcommand ("") is the bare command: yarn alone, bundle alone.
LANGUAGE_INSTALLS: dict[str, frozenset[str]] = {
    "pip": frozenset({"install"}),
    "npm": frozenset({"ci", "install", "i", "add", "update"}),
    "yarn": frozenset({"", "install", "add"}),
    "pnpm": frozenset({"install", "i", "add"}),
    "gem": frozenset({"install"}),
    "bundle": frozenset({"", "install"}),
    "bundler": frozenset({"", "install"}),
    "composer": frozenset({"install", "require", "update"}),
    "pipenv": frozenset({"install", "sync"}),
    "poetry": frozenset({"install", "add"}),
}
PYTHON_PACKAGES = frozenset({"python3", "python3-minimal", "python-is-python3"})
# node-gyp builds npm packages with python3 as well as a compiler.
NODE_MANAGERS = frozenset({"npm", "yarn", "pnpm"})
PYTHON_RE = re.compile(r"python(\d+(\.\d+)?)?")
DEV_CONTAINER_REPOSITORIES = (
    "mcr.microsoft.com/vscode/devcontainers/",
    "mcr.microsoft.com/devcontainers/",
)
# A RUN that asks which distro it runs on: . /etc/os-release, ID=alpine,
# "${ID}", "$ID_LIKE".
DISTRO_CHECK_RE = re.compile(
    r"""/etc/os-release
      | (?<![\w$])ID(?:_LIKE)?=            # ID=alpine, ID_LIKE=debian
      | \$\{?ID(?:_LIKE)?(?![\w])          # $ID, ${ID_LIKE}
    """,
    re.VERBOSE,
)
PACKAGE_MANAGERS = {
    "apt-get": "apt",
    "apt": "apt",
    "apk": "apk",
    "yum": "rpm",
    "dnf": "rpm",
    "microdnf": "rpm",
    "zypper": "zypper",
    "pacman": "pacman",
}
WHOLE_VARIABLE_RE = re.compile(
    r"""\$(?:
        \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}   # ${BASE}
      | (?P<plain>[A-Za-z_][A-Za-z0-9_]*)        # $BASE
    )""",
    re.VERBOSE,
)


def find_fixes(dockerfile: Dockerfile, settings: Settings) -> Iterator[Finding]:
    stage = final_stage(dockerfile)
    if stage is None:
        return
    allow_alpine = bool(settings.option(NAME, "allow-alpine", False))
    parent = parent_of(dockerfile, stage)
    ref = parse_image_ref(
        parent.image if parent else stage.image, dockerfile.global_args
    )
    known = lookup(ref)
    if known is None or ref.is_scratch:
        return
    new_tag = known.slim_tag_for(ref.tag or "latest", allow_alpine)
    if new_tag is None:
        if known.slim_rules and "$" in (ref.tag or ""):
            yield Skip(NAME, stage.first_line, "tag is set by a build argument")
        return

    line = stage.first_line
    reason = _guard(dockerfile, stage, ref, parent, new_tag)
    if reason is not None:
        yield Skip(NAME, line, reason)
        return
    need, packages = _needs(dockerfile, stage, known)
    if need == NATIVE_CODE_REASON:
        yield Skip(NAME, line, need)
        return
    if need is not None:
        yield Skip(NAME, line, f"{need}; consider a multi-stage build")
        return
    tag_edit = _tag_edit(dockerfile, stage, ref, new_tag)
    if isinstance(tag_edit, str):
        yield Skip(NAME, line, tag_edit)
        return
    edits = [tag_edit]
    note = "the slim image lacks compilers, -dev headers and many tools"
    if packages:
        edits.append(_install_edit(dockerfile, stage, packages))
        note = f"installs {' '.join(packages)}, which the slim image lacks"
    action = f"use tag {new_tag}"
    yield Fix(
        transform=NAME,
        line=line,
        problem="Final stage uses the full image, not its slim tag",
        action=action if len(action) <= 40 else "use the slim tag",
        edits=tuple(edits),
        safety=SAFETY,
        note=note,
    )


def _guard(
    dockerfile: Dockerfile,
    stage: Stage,
    ref: ImageRef,
    parent: Stage | None,
    new_tag: str,
) -> str | None:
    """Return why the FROM must not change, or None."""
    if _is_dev_container(dockerfile, ref):
        return "dev container images keep their tools"
    # ONBUILD RUN pip install -r requirements.txt runs in every child image,
    # which builds on this one and needs its compilers.
    if any(instruction.keyword == "ONBUILD" for instruction in stage.instructions):
        return "ONBUILD triggers build in child images"
    if parent is not None:
        return "final stage is built FROM another stage"
    if ref.digest is not None:
        return "FROM is pinned by digest"
    if dependents(dockerfile, stage):
        return "other stages build on the final stage"
    name = _whole_variable(stage.image)
    if name is not None and _branches_on_distro(dockerfile):
        # ARG IMAGE_TO_TEST=debian:10 / FROM ${IMAGE_TO_TEST} / RUN . \
        # /etc/os-release && if [ "${ID}" = "alpine" ]: the default is one
        # of many images the file is built on, not a choice to slim.
        return "base image is a build argument that may change distro"
    if name is not None:
        users = [other for other in dockerfile.stages if _whole_variable(other.image)]
        if sum(_whole_variable(other.image) == name for other in users) > 1:
            return f"image is ARG {name}, shared by several stages"
    if "alpine" in new_tag:
        manager = package_manager_used(dockerfile, stage)
        if manager not in (None, "apk"):
            return f"stage uses {manager}, which Alpine lacks"
    return None


def _is_dev_container(dockerfile: Dockerfile, ref: ImageRef) -> bool:
    """Tell whether the file builds a VS Code dev container image."""
    path = dockerfile.path.replace("\\", "/").lower()
    if ".devcontainer" in path or path.endswith("dev-container.dockerfile"):
        return True
    return ref.full_name.lower().startswith(DEV_CONTAINER_REPOSITORIES)


def _branches_on_distro(dockerfile: Dockerfile) -> bool:
    """Tell whether a RUN reads the distro or uses two package managers."""
    managers: set[str] = set()
    for instruction in dockerfile.instructions:
        if instruction.effective_keyword != "RUN":
            continue
        if DISTRO_CHECK_RE.search(instruction.original):
            return True
        for script in scripts_of(dockerfile, instruction):
            for command in script.commands:
                manager = PACKAGE_MANAGERS.get(command.program or "")
                if manager is not None:
                    managers.add(manager)
    return len(managers) > 1


def _whole_variable(image: str) -> str | None:
    """Return BASE for ``FROM $BASE`` or ``FROM ${BASE}``, else None."""
    found = WHOLE_VARIABLE_RE.fullmatch(image)
    if found is None:
        return None
    return found["braced"] or found["plain"]


def _needs(
    dockerfile: Dockerfile, stage: Stage, known: KnownImage
) -> tuple[str | None, list[str]]:
    """Return why the stage needs the full image, or the packages to add."""
    full = known.full_variant
    if full is None:
        return None, []
    installed = _installed_packages(dockerfile, stage)
    has_compiler = bool(installed & full.build_packages)
    missing: list[str] = []
    for instruction in stage.instructions:
        if instruction.effective_keyword != "RUN":
            continue
        for script in scripts_of(dockerfile, instruction):
            for command in script.commands:
                program = command.program or ""
                values = [value or "" for value in command.values()]
                first = command.words[0].value or ""
                if (
                    program in full.build_commands or first in full.build_commands
                ) and (not has_compiler):
                    return f"RUN uses {program}, which the slim image lacks", []
                if program in full.native_commands and "install" in values:
                    if not has_compiler:
                        return f"{program} install may build native extensions", []
                if program in ("apt-get", "apt") and "install" in values:
                    headers = [v for v in values if v.endswith("-dev")]
                    if headers and not has_compiler:
                        return f"installs {headers[0]} to build against", []
                if PIP_RE.fullmatch(program) and "install" in values:
                    native = _native_pip(values, full.native_pip)
                    if native is not None and not has_compiler:
                        return f"pip builds {native} from source", []
                manager = _language_install(program, values)
                if manager is not None and not _builds_native(
                    manager, installed, full.build_packages
                ):
                    # TODO: npm ci, pip install -r requirements.txt and the
                    # like are skipped on a full image: the lock or
                    # requirements file is not read, so a package that
                    # compiles (node-gyp, an sdist) cannot be ruled out.
                    return NATIVE_CODE_REASON, []
                if manager == "pip" and any("git+" in value for value in values):
                    _add(missing, full.tools.get("git"), installed)
                _add(missing, full.tools.get(program), installed)
    for word in _runtime_words(stage):
        _add(missing, full.tools.get(word.rsplit("/", 1)[-1]), installed)
    if not missing:
        return None, []
    if len(missing) > MAX_ADDED_PACKAGES:
        return f"uses {', '.join(missing)}, which the slim image lacks", []
    if any(package in NETWORK_TOOLS for package in missing):
        missing.insert(0, "ca-certificates")
    return None, missing


def _language_install(program: str, values: list[str]) -> str | None:
    """Return the package manager when the command installs packages."""
    if PYTHON_RE.fullmatch(program) and values[:3] == ["-m", "pip", "install"]:
        return "pip"
    if PIP_RE.fullmatch(program):
        program = "pip"
    if program == "uv" and (values[:1] == ["sync"] or values[:2] == ["pip", "install"]):
        return "pip"
    subcommands = LANGUAGE_INSTALLS.get(program)
    if subcommands is None:
        return None
    # The first word that is not an option: npm --prefix x ci is rare, so
    # an option's value is not skipped; an unknown word means no install.
    words = [value for value in values if not value.startswith("-")]
    subcommand = words[0] if words else ""
    return program if subcommand in subcommands else None


def _builds_native(
    manager: str, installed: set[str], compilers: frozenset[str]
) -> bool:
    """Tell whether the stage installs what native builds of ``manager`` need."""
    if not installed & compilers:
        return False
    return manager not in NODE_MANAGERS or bool(installed & PYTHON_PACKAGES)


def _add(missing: list[str], package: str | None, installed: set[str]) -> None:
    if package is not None and package not in installed and package not in missing:
        missing.append(package)


def _installed_packages(dockerfile: Dockerfile, stage: Stage) -> set[str]:
    packages: set[str] = set()
    for instruction in stage.instructions:
        if instruction.effective_keyword != "RUN":
            continue
        for script in scripts_of(dockerfile, instruction):
            for command in script.commands:
                if command.program not in ("apt-get", "apt"):
                    continue
                values = [value or "" for value in command.values()]
                if "install" not in values:
                    continue
                for value in values[values.index("install") + 1 :]:
                    if not value.startswith("-"):
                        packages.add(value.split("=", 1)[0])
    return packages


def _native_pip(values: list[str], native: frozenset[str]) -> str | None:
    for value in values:
        found = REQUIREMENT_NAME_RE.match(value)
        if found and found[0].lower() in native:
            return found[0]
    return None


def _runtime_words(stage: Stage) -> list[str]:
    """Return the programs HEALTHCHECK, CMD and ENTRYPOINT start."""
    words = []
    for instruction in stage.instructions:
        if instruction.keyword not in ("HEALTHCHECK", "CMD", "ENTRYPOINT"):
            continue
        arguments = list(instruction.arguments)
        if instruction.keyword == "HEALTHCHECK" and arguments[:1] == ["CMD"]:
            arguments = arguments[1:]
        for argument in arguments[:1]:
            words.extend(argument.split()[:1])
        # CMD curl -f x || exit 1 (shell form) is one argument.
        for argument in arguments:
            for part in re.split(r"&&|\|\||;|\|", argument):
                tokens = part.split()
                if tokens:
                    words.append(tokens[0])
    return words


def _tag_edit(
    dockerfile: Dockerfile, stage: Stage, ref: ImageRef, new_tag: str
) -> Edit | str:
    """Return the edit of the tag text, or a skip reason."""
    text = stage.image
    start = stage.image_start
    name = _whole_variable(text)
    if name is not None:
        return _arg_default_edit(dockerfile, name, new_tag)
    if ref.written_tag is None or ref.written_tag_span is None:
        if "$" in text:
            return "tag is set by a build argument"
        return insert(start + len(text), f":{new_tag}")
    tag_start = start + ref.written_tag_span[0]
    tag_end = start + ref.written_tag_span[1]
    if "$" not in ref.written_tag:
        return replace(tag_start, tag_end, new_tag)
    return _literal_part_edit(dockerfile, ref.written_tag, tag_start, new_tag)


def _literal_part_edit(
    dockerfile: Dockerfile, written: str, offset: int, new_tag: str
) -> Edit | str:
    """Insert the slim part into ``${VERSION}-bookworm`` outside the variable."""
    pieces: list[tuple[str, bool]] = []
    position = 0
    for match in re.finditer(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*", written):
        pieces.append((written[position : match.start()], False))
        pieces.append((match[0], True))
        position = match.end()
    pieces.append((written[position:], False))
    resolved_parts = []
    for piece, is_variable in pieces:
        if not is_variable:
            resolved_parts.append((piece, piece, False))
            continue
        value, unresolved = resolve_variables(piece, dockerfile.global_args)
        if unresolved:
            return "tag is set by a build argument"
        resolved_parts.append((piece, value, True))
    old = "".join(value for _, value, _ in resolved_parts)
    matcher = difflib.SequenceMatcher(None, old, new_tag, autojunk=False)
    opcodes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if len(opcodes) != 1 or opcodes[0][0] != "insert":
        return "tag is set by a build argument"
    _, at, _, new_start, new_end = opcodes[0]
    inserted = new_tag[new_start:new_end]
    # Map the resolved offset back into the written text.
    resolved_position = 0
    written_position = 0
    for piece, value, is_variable in resolved_parts:
        if resolved_position + len(value) >= at and not is_variable:
            return insert(
                offset + written_position + (at - resolved_position), inserted
            )
        if is_variable and resolved_position < at < resolved_position + len(value):
            return "tag is set by a build argument"
        resolved_position += len(value)
        written_position += len(piece)
    return "tag is set by a build argument"


def _arg_default_edit(dockerfile: Dockerfile, name: str, new_tag: str) -> Edit | str:
    """Change the tag in ``ARG BASE=python:3.12`` before the first FROM."""
    for instruction in dockerfile.instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword != "ARG":
            continue
        for argument in instruction.arguments:
            key, equals, default = argument.partition("=")
            if key != name or not equals:
                continue
            ref = parse_image_ref(default)
            if ref.tag_span is None or ref.digest is not None:
                return "image is an ARG whose tag cannot be changed"
            found = _find_default(dockerfile, instruction, argument)
            if found is None:
                return "image is an ARG whose tag cannot be changed"
            start = found + len(key) + 1
            return replace(start + ref.tag_span[0], start + ref.tag_span[1], new_tag)
    return "image is an ARG without a default"


def _find_default(
    dockerfile: Dockerfile, instruction: Instruction, argument: str
) -> int | None:
    position = dockerfile.text.find(argument, instruction.start, instruction.end)
    return position if position >= 0 else None


def _install_edit(dockerfile: Dockerfile, stage: Stage, packages: list[str]) -> Edit:
    """Add one RUN after FROM installing the standalone tools the stage uses."""
    source = stage.from_instruction
    lower = dockerfile.text[source.start : source.start + 4].islower()
    keyword = "run" if lower else "RUN"
    escape = dockerfile.escape
    indent = dockerfile.indentation(source.first_line)
    lines = [
        f"{indent}{keyword} apt-get update {escape}",
        f"{indent}    && apt-get install -y --no-install-recommends "
        f"{' '.join(packages)} {escape}",
        f"{indent}    && rm -rf /var/lib/apt/lists/*",
    ]
    return insert_lines_after(dockerfile, source.last_line, lines)
