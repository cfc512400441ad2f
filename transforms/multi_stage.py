"""Split a stage that builds and runs on a toolchain image into two stages.

What it does:
    Finds a single-stage Dockerfile whose stage compiles or packages the
    application and then runs it on the same toolchain image, and turns it
    into a build stage and a runtime stage:
    - .NET: dotnet publish (or dotnet build) with -o on a dotnet sdk image
      (mcr.microsoft.com/dotnet/sdk, dotnet/core/sdk, microsoft/dotnet:*-sdk)
      runs on dotnet/aspnet of the same tag for web projects and on
      dotnet/runtime otherwise. A project counts as web when the stage has
      EXPOSE, sets an ASPNETCORE_ variable or names aspnet anywhere: the
      project's Sdk attribute is not visible from the Dockerfile.
    - Go: the binary of go build -o (or go build without -o, or go install)
      runs on gcr.io/distroless/static-debian12, built with CGO_ENABLED=0,
      when nothing hints at cgo (CGO_ENABLED=1, gcc, a -dev package,
      -linkmode external, -race; -tags netgo is not a hint); otherwise on
      debian:<release>-slim of the golang image's Debian release (alpine of
      the same version for an alpine golang image). A runtime that needs a
      shell (a shell-form CMD with variables, a user made by useradd) or
      packages also falls back from distroless to debian slim.
    - Java: the jar that java -jar runs, when mvn or ./mvnw package builds
      it under target/ or gradle or ./gradlew build (bootJar, jar...) under
      build/libs/, runs on eclipse-temurin:<N>-jre of the same Java version.
    - Rust: the binary of cargo build --release (target/release) or cargo
      install runs on gcr.io/distroless/cc-debian12 for a rust image of an
      explicit Debian 12 or older release, else on debian:<release>-slim.
    - Python: on a full python image, or one where the stage installs
      compilers or -dev packages, the stage creates a virtual environment
      in /opt/venv before its first pip install; the slim image of the same
      tag gets the venv, the WORKDIR copied whole, and the run-time
      libraries of the -dev packages (libpq-dev -> libpq5).
    - Node: npm ci or npm install on a full node image (or keeping
      devDependencies) gets RUN npm prune --omit=dev (--production before
      Node 16) at the end of the build stage; node's slim tag gets the
      WORKDIR copied whole.
    The original FROM line gets " AS build" (or keeps its alias) and every
    build step stays byte for byte, as do blank lines at the end of the file:
    the new stage goes in before them. The instructions that only describe how
    the container runs (CMD, ENTRYPOINT, EXPOSE, HEALTHCHECK, STOPSIGNAL,
    LABEL, MAINTAINER) move, with the comment lines right above them, to a new
    last stage. That stage also gets WORKDIR /app (Python and Node keep their
    own WORKDIR), a COPY --from=build of the artifact, the ENV instructions the
    program may read (not the toolchain's own GO*, DOTNET_CLI_*, NUGET_* or
    PATH), the stage ARGs that moved lines use, the last USER when the runtime
    image has that user, and the run-time libraries that the build's -dev
    packages imply. The entry command is rewritten to the artifact's new path.
    Global ARGs stay before the first FROM.
    It leaves alone, with a skip reason: a file that is already multi-stage
    and ends on a toolchain image, a stage with ONBUILD triggers, Windows
    images, an entry command that runs the toolchain (dotnet run, go run),
    and any stage whose artifact or entry command it cannot determine.

Why:
    A toolchain image carries compilers, SDKs, package caches and sources:
    hundreds of megabytes the application never uses at run time, each one
    more code an attacker can use and a scanner reports. The runtime image
    ships only what the program needs.

Example:
    Before:
        FROM golang:1.22
        WORKDIR /src
        COPY . .
        RUN go build -o /out/server .
        CMD ["/out/server"]
    After:
        FROM golang:1.22 AS build
        WORKDIR /src
        COPY . .
        RUN CGO_ENABLED=0 go build -o /out/server .

        FROM gcr.io/distroless/static-debian12
        WORKDIR /app
        COPY --from=build /out/server /app/server
        CMD ["/app/server"]

Fix safety:
    Unsafe. The container runs on a different image: only the artifact is
    copied, so files the program reads at run time from the source tree or
    from the toolchain image are missing, a Go program that needs cgo fails
    to build with CGO_ENABLED=0, a .NET console app that is really a web app
    (or the reverse) gets the wrong runtime, the working directory becomes
    /app, and a user created in the build stage is only carried when its
    RUN does nothing else. Review the note on each fix.

Known gaps:
    - A static site built by Node is not moved to nginx: it is converted
      like a Node server, keeping its own file server.
    - yarn and pnpm installs, npm install -g and npm install <package> are
      skipped; so is pip with --user, --target or --prefix.
    - Python and Node stages copy the WORKDIR whole; a stage that copies or
      creates files elsewhere (RUN mkdir -p /data) is skipped. COPY --from
      gives the files to root, so a USER that must write there needs a
      --chown added by hand.
    - A HEALTHCHECK that calls a program the runtime image lacks (curl on
      dotnet/aspnet, anything on distroless) makes the stage skipped.
    - dotnet run, go run, cargo run, mvn spring-boot:run and similar entry
      commands are skipped: converting them would need a new publish step,
      and such files are often development images on purpose.
    - A .NET publish without -o, or into a directory from a variable, is
      skipped: its output folder depends on the project's target framework.
    - A jar named by a wildcard (java -jar target/*.jar) is skipped.
    - A -dev package with no known run-time library is skipped rather than
      guessed; the table covers common Debian and Alpine libraries.
    - A golang or rust tag without a Debian release name is taken to be
      bookworm for the debian slim runtime; a newer build image would need
      a newer runtime.
    - A pinned digest on the toolchain image has no runtime equivalent; the
      runtime image is written by tag.
    - Blank lines left between the build steps and the moved lines are
      dropped so that one blank line separates the stages; only those at
      the very end of the file are kept.

References:
    Docker docs, "Multi-stage builds".
"""

from __future__ import annotations

import json
import posixpath
import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from fixer.edits import Edit, Finding, Fix, Safety, Settings, Skip, insert
from fixer.images import parse_image_ref
from fixer.parse import Dockerfile, Instruction, Stage
from fixer.shell import Command, scripts_of

NAME = "multi-stage"
SAFETY = Safety.UNSAFE

DATA: dict[str, Any] = tomllib.loads(
    resources.files("fixer").joinpath("data/toolchains.toml").read_text("utf-8")
)
BUILD_ALIAS = "build"
FINAL_WORKDIR = "/app"
# Instructions that only say how the container runs: they move.
MOVED = frozenset(
    {"CMD", "ENTRYPOINT", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "LABEL", "MAINTAINER"}
)
# Moved instructions that go after the artifact's COPY in the new stage.
LATE = frozenset({"HEALTHCHECK", "ENTRYPOINT", "CMD"})
DEFAULT_PATH = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
)
USER_COMMANDS = frozenset({"useradd", "adduser", "groupadd", "addgroup"})
TOOLCHAIN_RUNNERS = {
    ("dotnet", "run"),
    ("dotnet", "watch"),
    ("go", "run"),
    ("mvn", "spring-boot:run"),
    ("./mvnw", "spring-boot:run"),
    ("gradle", "bootRun"),
    ("./gradlew", "bootRun"),
    ("cargo", "run"),
}
SHELL_OPERATORS = frozenset(";&|<>()`\n")
SHELL_SPECIALS = frozenset("$'\"\\*?[]{}~#")
VARIABLE_RE = re.compile(r"\$(?:\{(?P<braced>\w+)(?P<rest>[^}]*)\}|(?P<plain>\w+))")
JSON_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
DEBIAN_CODENAMES = ("trixie", "bookworm", "bullseye", "buster", "stretch")
FILE_WRITERS = frozenset(
    {"mkdir", "touch", "cp", "mv", "ln", "install", "tee", "chmod", "chown"}
)
PACKAGE_INSTALLERS = {"apt-get": "install", "apt": "install", "apk": "add"}


@dataclass(frozen=True)
class ImageRef:
    """An image reference, with the repository normalised (no docker.io/)."""

    repository: str
    tag: str
    raw_tag: str
    digest: str

    @property
    def last(self) -> str:
        return self.repository.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class EntryWord:
    """One word of the entry command, and the instruction it is written in."""

    instruction: Instruction
    position: int
    value: str | None


@dataclass(frozen=True)
class Artifact:
    """What the runtime stage copies from the build stage."""

    source: str
    destination: str


@dataclass(frozen=True)
class Plan:
    """One ecosystem's answer: what to copy, what to run, which image."""

    runtimes: tuple[str, ...]
    artifacts: tuple[Artifact, ...]
    rewrites: tuple[tuple[EntryWord, str], ...]
    build_edits: tuple[Edit, ...] = ()
    static_edits: tuple[Edit, ...] = ()
    note: str = ""
    workdir: str = FINAL_WORKDIR
    # Lines for the new stage before WORKDIR (ENV PATH of a venv).
    final_env: tuple[str, ...] = ()
    # Lines appended to the build stage (RUN npm prune --omit=dev).
    build_tail: tuple[str, ...] = ()


@dataclass
class Context:
    """Facts about the single stage that every ecosystem needs."""

    dockerfile: Dockerfile
    stage: Stage
    image: ImageRef
    default_workdir: str
    workdirs: dict[int, str | None] = field(default_factory=dict)
    entry: list[EntryWord] | None = None
    entry_reason: str = ""

    def workdir_at(self, instruction: Instruction) -> str | None:
        return self.workdirs.get(instruction.index, self.default_workdir)


def find_fixes(dockerfile: Dockerfile, settings: Settings) -> Iterator[Finding]:
    stages = dockerfile.stages
    if not stages:
        return
    if len(stages) > 1:
        if _ends_on_toolchain(dockerfile):
            yield Skip(NAME, stages[-1].first_line, "already multi-stage")
        return
    stage = stages[0]
    image = _parse_image(stage.image, dockerfile.global_args)
    ecosystem = _ecosystem(image) if image is not None else None
    if ecosystem is None or image is None:
        return
    line = stage.first_line
    reason = _refusal(dockerfile, stage)
    if reason:
        yield Skip(NAME, line, reason)
        return
    context = _context(dockerfile, stage, image, ecosystem)
    planned = PLANNERS[ecosystem](context)
    if planned is None:
        return
    if isinstance(planned, str):
        yield Skip(NAME, line, planned)
        return
    result = _rewrite(context, planned)
    if isinstance(result, str):
        yield Skip(NAME, line, result)
        return
    edits, runtime = result
    note = f"runs on {runtime}; copies only the build output"
    if planned.note:
        note = f"{note}; {planned.note}"
    yield Fix(
        transform=NAME,
        line=line,
        problem="Final image ships the build toolchain",
        action="split into build and runtime stages",
        edits=edits,
        safety=SAFETY,
        note=note,
    )


def toolchain_of(dockerfile: Dockerfile) -> str | None:
    """Return the ecosystem of a single-stage file's image, if it has one."""
    if len(dockerfile.stages) != 1:
        return None
    image = _parse_image(dockerfile.stages[0].image, dockerfile.global_args)
    return _ecosystem(image) if image is not None else None


# -- images ------------------------------------------------------------------


def _parse_image(text: str, args: dict[str, str]) -> ImageRef | None:
    """Return the reference ``text`` names, with global ARGs expanded."""
    reference = parse_image_ref(text, args)
    if reference.has_variables and "$" in reference.resolved:
        return None
    repository = reference.full_name.lower().removeprefix("library/")
    if not repository:
        return None
    return ImageRef(
        repository,
        reference.tag or "",
        reference.written_tag or "",
        reference.digest or "",
    )


def _ecosystem(image: ImageRef) -> str | None:
    if _is_dotnet_sdk(image):
        return "dotnet"
    if image.repository in DATA["go"]["repositories"]:
        return "go"
    java = DATA["java"]
    if image.repository in java["maven_repositories"] + java["gradle_repositories"]:
        return "java"
    if image.repository in java["jdk_repositories"] and "jre" not in image.tag:
        return "java"
    if image.repository in DATA["rust"]["repositories"]:
        return "rust"
    if image.repository in DATA["node"]["repositories"]:
        return "node"
    if image.repository in DATA["python"]["repositories"]:
        return "python"
    return None


def _is_dotnet_sdk(image: ImageRef) -> bool:
    dotnet = DATA["dotnet"]
    if any(image.repository == entry["sdk"] for entry in dotnet["repositories"]):
        return True
    return image.repository == dotnet["legacy_repository"] and "sdk" in image.tag


def _ends_on_toolchain(dockerfile: Dockerfile) -> bool:
    """Tell whether the last stage, through its parents, is a toolchain image."""
    stage: Stage | None = dockerfile.stages[-1]
    seen = 0
    while stage is not None and seen < len(dockerfile.stages):
        parent = dockerfile.parent_stage(stage)
        if parent is None:
            break
        stage, seen = parent, seen + 1
    if stage is None:
        return False
    image = _parse_image(stage.image, dockerfile.global_args)
    if image is None or image.repository in DATA["java"]["jdk_repositories"]:
        return False
    # python and node images are runtimes as much as toolchains.
    return _ecosystem(image) in ("dotnet", "go", "java", "rust")


# -- what stops a conversion -------------------------------------------------


def _refusal(dockerfile: Dockerfile, stage: Stage) -> str:
    """Return why the stage is left alone before any ecosystem looks at it."""
    if not dockerfile.is_posix_shell(stage.from_instruction):
        return "Windows image"
    for instruction in stage.instructions:
        if instruction.keyword == "ONBUILD":
            return "ONBUILD triggers make it a base image"
        if instruction.keyword == "SHELL" and not dockerfile.is_posix_shell(
            instruction
        ):
            return "Windows image"
    return ""


def _context(
    dockerfile: Dockerfile, stage: Stage, image: ImageRef, ecosystem: str
) -> Context:
    default = DATA.get(ecosystem, {}).get("default_workdir", "/")
    context = Context(dockerfile, stage, image, default)
    workdir: str | None = default
    for instruction in stage.instructions[1:]:
        context.workdirs[instruction.index] = workdir
        if instruction.keyword == "WORKDIR" and instruction.arguments:
            value = _expand(
                _unquote(instruction.arguments[0]), _scope(dockerfile, instruction)
            )
            if value is None:
                workdir = None
            elif value.startswith("/"):
                workdir = posixpath.normpath(value)
            elif workdir is not None:
                workdir = posixpath.normpath(posixpath.join(workdir, value))
    context.entry, context.entry_reason = _entry(stage)
    return context


def _scope(dockerfile: Dockerfile, instruction: Instruction) -> dict[str, str]:
    values = dict(dockerfile.global_args)
    values.update(
        {
            name: _unquote(value)
            for name, value in dockerfile.environment(instruction).items()
        }
    )
    return values


def _entry(stage: Stage) -> tuple[list[EntryWord] | None, str]:
    """Return the words the container runs: ENTRYPOINT, then CMD."""
    entrypoint = _last(stage, "ENTRYPOINT")
    command = _last(stage, "CMD")
    instructions = [item for item in (entrypoint, command) if item is not None]
    if entrypoint is not None and not entrypoint.is_json_form:
        instructions = [entrypoint]
    if not instructions:
        return None, "no entry command"
    words: list[EntryWord] = []
    for instruction in instructions:
        values = _words_of(instruction)
        if values is None:
            return None, "entry command is not a simple command"
        words.extend(
            EntryWord(instruction, position, value)
            for position, value in enumerate(values)
        )
    if not words or words[0].value is None:
        return None, "entry command is not a simple command"
    return words, ""


def _last(stage: Stage, keyword: str) -> Instruction | None:
    found = None
    for instruction in stage.instructions:
        if instruction.keyword == keyword:
            found = instruction
    return found


def _words_of(instruction: Instruction) -> list[str | None] | None:
    if instruction.is_json_form:
        return list(instruction.arguments)
    if not instruction.arguments:
        return []
    return _shell_words(instruction.arguments[0])


def _shell_words(text: str) -> list[str | None] | None:
    """Split a shell-form command; None when it uses shell operators."""
    if any(character in SHELL_OPERATORS for character in text):
        return None
    return [
        None if any(character in SHELL_SPECIALS for character in word) else word
        for word in text.split()
    ]


# -- shell helpers -------------------------------------------------------------


@dataclass(frozen=True)
class Located:
    """A command of a RUN, with the directory it runs in (None: unknown)."""

    instruction: Instruction
    command: Command
    cwd: str | None


def _commands(context: Context) -> list[Located]:
    """Return every command of the stage's RUNs, following literal cd."""
    found: list[Located] = []
    dockerfile = context.dockerfile
    for instruction in context.stage.instructions:
        if instruction.keyword != "RUN":
            continue
        for script in scripts_of(dockerfile, instruction):
            cwd = context.workdir_at(instruction)
            for command in script.commands:
                found.append(Located(instruction, command, cwd))
                if command.program == "cd":
                    cwd = _change_directory(cwd, command)
    return found


def _change_directory(cwd: str | None, command: Command) -> str | None:
    values = command.values()
    if len(values) != 1 or values[0] is None or cwd is None:
        return None
    return posixpath.normpath(posixpath.join(cwd, values[0]))


def _option_value(values: Sequence[str | None], names: Sequence[str]) -> str | None:
    """Return the value of ``-o X``, ``-o=X`` or ``-o:X`` style options.

    Returns "" when the option is there but its value is not literal.
    """
    for index, value in enumerate(values):
        if value is None:
            continue
        if value in names:
            if index + 1 < len(values):
                following = values[index + 1]
                return following if following is not None else ""
            return ""
        for name in names:
            for separator in ("=", ":"):
                if value.startswith(name + separator):
                    return value[len(name) + 1 :]
    return None


def _resolve(cwd: str | None, path: str) -> str | None:
    if path.startswith("/"):
        return posixpath.normpath(path)
    if cwd is None:
        return None
    return posixpath.normpath(posixpath.join(cwd, path))


def _entry_problem(context: Context, builds: bool) -> str | None:
    """Say why the stage's entry command cannot run an artifact, or None."""
    if context.entry is None:
        return context.entry_reason if builds else "no build step"
    if _runs_toolchain(context.entry):
        return "entry command runs the toolchain"
    if not builds:
        return "no build step"
    return None


def _runs_toolchain(entry: list[EntryWord]) -> bool:
    values = [word.value for word in entry[:2]]
    if len(values) < 2:
        return values[0] in ("go", "dotnet", "cargo", "mvn", "gradle")
    return (values[0], values[1]) in TOOLCHAIN_RUNNERS


def _stage_text(context: Context) -> str:
    """Return the text of the stage's instructions that do not move."""
    return "\n".join(
        instruction.original
        for instruction in context.stage.instructions
        if instruction.keyword not in MOVED
    )


# -- .NET ----------------------------------------------------------------------


def _plan_dotnet(context: Context) -> Plan | str:
    outputs: list[tuple[str, Located]] = []
    publishes = 0
    for located in _commands(context):
        values = located.command.values()
        if located.command.program != "dotnet" or not values:
            continue
        if values[0] not in ("publish", "build"):
            continue
        publishes += 1
        output = _option_value(values, ("-o", "--output"))
        if not output:
            continue
        directory = _resolve(located.cwd, _expand(output, {}) or "")
        if directory is not None and "$" not in output:
            outputs.append((directory, located))
    entry = context.entry
    if entry is None:
        return context.entry_reason if publishes else "no build step"
    if _runs_toolchain(entry):
        return "entry command runs the toolchain"
    if not outputs:
        # TODO: dotnet publish without -o writes to bin/<config>/<tfm>/publish,
        # and the target framework is in the project file, not here; it is
        # skipped until the entry command's path is trusted as the output.
        return "publish output directory unknown" if publishes else "no build step"
    target = entry[0]
    if target.value == "dotnet":
        dlls = [word for word in entry[1:] if (word.value or "").endswith(".dll")]
        if not dlls:
            return "entry command does not run a .dll"
        target = dlls[0]
    assert target.value is not None
    path = _resolve(context.workdir_at(target.instruction), target.value)
    for directory, _ in reversed(outputs):
        if path is None or not path.startswith(directory.rstrip("/") + "/"):
            continue
        relative = posixpath.relpath(path, directory)
        new = relative if target is not entry[0] else f"{FINAL_WORKDIR}/{relative}"
        return Plan(
            runtimes=(_dotnet_runtime(context),),
            artifacts=(Artifact(directory, "."),),
            rewrites=((target, new),),
            note=(
                "aspnet chosen from EXPOSE/ASPNETCORE_ hints"
                if _is_web(context)
                else "no web hints, so the console runtime"
            ),
        )
    return "entry command is not the publish output"


def _is_web(context: Context) -> bool:
    for instruction in context.stage.instructions[1:]:
        if instruction.keyword == "EXPOSE":
            return True
        if "ASPNETCORE_" in instruction.original.upper():
            return True
        if "aspnet" in instruction.original.lower():
            return True
    return False


def _dotnet_runtime(context: Context) -> str:
    dotnet = DATA["dotnet"]
    web = _is_web(context)
    image = context.image
    flags = _platform_prefix(context)
    for entry in dotnet["repositories"]:
        if image.repository == entry["sdk"]:
            repository = entry["web" if web else "console"]
            tag = _runtime_version(image.raw_tag)
            return flags + (f"{repository}:{tag}" if tag else repository)
    # microsoft/dotnet:2.2-sdk-alpine -> microsoft/dotnet:2.2-aspnetcore-runtime-alpine
    kind = dotnet["legacy_web_tag" if web else "legacy_console_tag"]
    tag = _runtime_version(image.raw_tag).replace("sdk", kind, 1)
    return f"{flags}{dotnet['legacy_repository']}:{tag}"


def _runtime_version(tag: str) -> str:
    """Return a runtime tag for an sdk tag: 8.0.100-alpine -> 8.0-alpine."""
    return re.sub(r"^(\d+\.\d+)\.\d{3,}", r"\1", tag)


def _platform_prefix(context: Context) -> str:
    platform = context.stage.platform
    if not platform or "BUILDPLATFORM" in platform:
        return ""
    return f"--platform={platform} "


# -- Go ------------------------------------------------------------------------


@dataclass(frozen=True)
class GoOutput:
    located: Located
    kind: str  # "file", "directory" or "install"
    path: str


def _plan_go(context: Context) -> Plan | str:
    go = DATA["go"]
    outputs = _go_outputs(context)
    reason = _entry_problem(context, bool(outputs))
    if reason is not None:
        return reason
    entry = context.entry
    assert entry is not None
    program = entry[0]
    assert program.value is not None
    output = _match_go_output(context, program.value, program.instruction, outputs)
    if output is None:
        return "entry command is not a build output"
    name = posixpath.basename(output.path)
    new = f"{FINAL_WORKDIR}/{name}"
    artifacts = (Artifact(output.path, new),)
    rewrites = ((program, new),)
    codename = _codename(context.image.tag, go["default_codename"])
    if "alpine" in context.image.tag:
        dynamic = _alpine_runtime(context.image.tag, go["alpine_runtime"])
    else:
        dynamic = go["dynamic_runtime"].format(codename=codename)
    platform = _platform_prefix(context)
    cgo = _cgo_state(context, output)
    if cgo == "on":
        return Plan(
            (platform + dynamic,),
            artifacts,
            rewrites,
            note="cgo is in use; files the program reads from the source tree "
            "are not copied",
        )
    static_edits: tuple[Edit, ...] = ()
    if cgo == "default":
        static_edits = (insert(output.located.command.start, "CGO_ENABLED=0 "),)
    return Plan(
        runtimes=(platform + go["static_runtime"], platform + dynamic),
        artifacts=artifacts,
        rewrites=rewrites,
        static_edits=static_edits,
        note="files the program reads from the source tree are not copied",
    )


def _go_outputs(context: Context) -> list[GoOutput]:
    outputs = []
    for located in _commands(context):
        values = located.command.values()
        if located.command.program != "go" or not values:
            continue
        if values[0] == "install":
            environment = _scope(context.dockerfile, located.instruction)
            gobin = environment.get("GOBIN") or posixpath.join(
                environment.get("GOPATH", "/go"), "bin"
            )
            outputs.append(GoOutput(located, "install", gobin))
            continue
        if values[0] != "build":
            continue
        output = _option_value(values, ("-o",))
        if output == "":
            continue
        if output is None:
            if located.cwd is not None:
                outputs.append(GoOutput(located, "directory", located.cwd))
            continue
        path = _resolve(located.cwd, output)
        if path is None:
            continue
        kind = "directory" if output.endswith("/") else "file"
        outputs.append(GoOutput(located, kind, path))
    return outputs


def _match_go_output(
    context: Context, program: str, instruction: Instruction, outputs: list[GoOutput]
) -> GoOutput | None:
    if "/" in program:
        path = _resolve(context.workdir_at(instruction), program)
        candidates = [path] if path is not None else []
    else:
        # CMD ["server"] runs a binary found on PATH.
        directories = (*DEFAULT_PATH, "/go/bin", "/usr/local/go/bin")
        candidates = [posixpath.join(directory, program) for directory in directories]
    for output in reversed(outputs):
        for path in candidates:
            if output.kind == "file" and path == output.path:
                return output
            if output.kind != "file" and posixpath.dirname(path) == output.path:
                return GoOutput(output.located, output.kind, path)
    return None


def _cgo_state(context: Context, output: GoOutput) -> str:
    """Return "off" (already CGO_ENABLED=0), "on" (cgo hints) or "default"."""
    text = _stage_text(context)
    go = DATA["go"]
    if any(hint in text for hint in go["cgo_hints"]):
        return "on"
    if output.located.command.wrappers and any(
        wrapper.value == "sudo" for wrapper in output.located.command.wrappers
    ):
        return "on"
    packages = _installed_packages(context)
    if any(_is_compiler_or_library(package) for package in packages):
        return "on"
    environment = _scope(context.dockerfile, output.located.instruction)
    if environment.get("CGO_ENABLED") == "0":
        return "off"
    command_text = context.dockerfile.text[
        output.located.command.start : output.located.command.end
    ]
    if "CGO_ENABLED=0" in command_text:
        return "off"
    if "CGO_ENABLED" in text:
        return "on"
    return "default"


def _is_compiler_or_library(package: str) -> bool:
    compilers = ("gcc", "g++", "clang", "build-essential", "build-base", "musl-dev")
    return package in compilers or package.endswith("-dev")


def _codename(tag: str, default: str) -> str:
    for codename in DEBIAN_CODENAMES:
        if codename in tag:
            return codename
    return str(default)


def _alpine_runtime(tag: str, default: str) -> str:
    match = re.search(r"alpine(\d+\.\d+)", tag)
    return f"alpine:{match[1]}" if match else str(default)


# -- Python --------------------------------------------------------------------


PIP_RE = re.compile(r"pip(\d+(\.\d+)?)?")
PYTHON_RE = re.compile(r"python(\d+(\.\d+)?)?")
PIP_OUTSIDE_SITE = ("--user", "--target", "-t", "--prefix", "--root")


def _plan_python(context: Context) -> Plan | str | None:
    python = DATA["python"]
    installs = [
        located for located in _commands(context) if _pip_install(located.command)
    ]
    if not installs:
        return None
    full = not _is_slim_tag(context.image.tag)
    if not full and not any(
        _is_compiler_or_library(package) for package in _installed_packages(context)
    ):
        return None
    for located in installs:
        words = located.command.words
        if words[0].value is not None and "/" in words[0].value:
            return "pip is called by its full path"
        values = located.command.values()
        if any(_is_option(value, PIP_OUTSIDE_SITE) for value in values):
            return "pip installs outside site-packages"
    runtime = _slim_image(context)
    if runtime is None:
        return "no slim variant known for this tag"
    workdir = _application_directory(context)
    if isinstance(workdir, str) and not workdir.startswith("/"):
        return workdir
    assert isinstance(workdir, str)
    venv = str(python["venv"])
    first = min(located.instruction.first_line for located in installs)
    first = _comment_start(context.dockerfile, first)
    indent = context.dockerfile.indentation(first)
    newline = context.dockerfile.newline
    lower = _is_lower_case(context)
    lines = (
        _keyword_case(f"RUN python3 -m venv {venv}", lower),
        _keyword_case(f'ENV PATH="{venv}/bin:$PATH"', lower),
    )
    edit = insert(
        context.dockerfile.line_starts[first],
        "".join(f"{indent}{line}{newline}" for line in lines),
    )
    note = "pip installs go to a virtual environment in " + venv
    if full:
        note += "; libraries the full python image gave compiled packages are gone"
    return Plan(
        runtimes=(_platform_prefix(context) + runtime,),
        artifacts=(Artifact(venv, venv), Artifact(workdir, workdir)),
        rewrites=(),
        build_edits=(edit,),
        note=note,
        workdir=workdir,
        final_env=(f'ENV PATH="{venv}/bin:$PATH"',),
    )


def _pip_install(command: Command) -> bool:
    program = command.program
    values = command.values()
    if program is None:
        return False
    if PYTHON_RE.fullmatch(program) and values[:2] == ["-m", "pip"]:
        values = values[2:]
    elif not PIP_RE.fullmatch(program):
        return False
    return "install" in values


def _is_option(value: str | None, names: Sequence[str]) -> bool:
    return value is not None and any(
        value == name or value.startswith(name + "=") for name in names
    )


def _is_slim_tag(tag: str) -> bool:
    return "slim" in tag or "alpine" in tag


def _slim_image(context: Context) -> str | None:
    """Return the slim variant of a python or node image, as written."""
    image = context.image
    text = context.stage.image
    if _is_slim_tag(image.tag):
        return text
    name = text[: len(text) - len(image.raw_tag) - 1] if image.raw_tag else text
    name = name.split("@", 1)[0]
    raw = image.raw_tag
    if image.tag in ("", "latest"):
        return f"{name}:slim"
    for codename in DEBIAN_CODENAMES:
        if raw.endswith("-" + codename):
            return f"{name}:{raw[: -len(codename)]}slim-{codename}"
    if re.fullmatch(r"[\w.${}-]+", raw) and not re.search(r"[a-z]{4,}", image.tag):
        return f"{name}:{raw}-slim"
    return None


def _application_directory(context: Context) -> str:
    """Return the WORKDIR the application lives in, or why there is none.

    The runtime stage copies that directory whole, so every file the stage
    copies in must land inside it.
    """
    entry = context.entry
    if entry is None:
        return context.entry_reason
    workdir = context.workdir_at(entry[0].instruction)
    if workdir is None or workdir == "/":
        return "application is not under a WORKDIR"
    for instruction in context.stage.instructions:
        if instruction.keyword not in ("COPY", "ADD") or len(instruction.arguments) < 2:
            continue
        destination = _resolve(
            context.workdir_at(instruction), _unquote(instruction.arguments[-1])
        )
        if destination is None or not (
            destination == workdir or destination.startswith(workdir + "/")
        ):
            return "files copied outside the WORKDIR"
    if _writes_outside(context, workdir):
        return "build writes files outside the WORKDIR"
    return workdir


def _writes_outside(context: Context, workdir: str) -> bool:
    """Tell whether a RUN creates files the runtime stage would not copy.

    RUN mkdir -p /documents makes a folder the program may need; only the
    WORKDIR, the venv and scratch folders are known to be safe to leave.
    """
    scratch = ("/tmp", "/var/lib/apt", "/var/cache", "/root/.cache", "/opt/venv")
    for located in _commands(context):
        if located.command.program not in FILE_WRITERS:
            continue
        for value in located.command.values():
            if value is None or not value.startswith("/"):
                continue
            path = posixpath.normpath(value)
            inside = path == workdir or path.startswith(workdir + "/")
            if not inside and not path.startswith(scratch):
                return True
    return False


def _comment_start(dockerfile: Dockerfile, line: int) -> int:
    while line > 0 and dockerfile.line_text(line - 1).lstrip().startswith("#"):
        line -= 1
    return line


# -- Node ------------------------------------------------------------------------


NPM_INSTALLS = frozenset({"ci", "install", "i"})
NPM_PRODUCTION = ("--omit=dev", "--production", "--only=prod", "--only=production")


def _plan_node(context: Context) -> Plan | str | None:
    installs = []
    for located in _commands(context):
        program = located.command.program
        values = located.command.values()
        if program in ("yarn", "pnpm") and (not values or values[0] == "install"):
            # TODO: yarn and pnpm need their own prune step (yarn workspaces
            # focus --production, pnpm prune --prod); skipped until written.
            return "yarn and pnpm installs are not converted"
        if program != "npm" or not values or values[0] not in NPM_INSTALLS:
            continue
        if any(value in ("-g", "--global") for value in values):
            return "global npm installs"
        if len([value for value in values[1:] if not (value or "-").startswith("-")]):
            # npm install express: packages named in the Dockerfile.
            return "npm install names packages"
        installs.append(located)
    if not installs:
        return None
    pruned = any(
        _is_option(value, NPM_PRODUCTION)
        for located in installs
        for value in located.command.values()
    )
    full = not _is_slim_tag(context.image.tag)
    if pruned and not full:
        return None
    runtime = _slim_image(context)
    if runtime is None:
        return "no slim variant known for this tag"
    workdir = _application_directory(context)
    if not workdir.startswith("/"):
        return workdir
    major = re.match(r"\d+", context.image.tag)
    omit = "--production" if major and int(major[0]) < 16 else "--omit=dev"
    prune: tuple[str, ...] = (f"RUN npm prune {omit}",)
    if _ends_as_other_user(context):
        # USER node after npm install: node_modules belongs to root, so the
        # prune must run as root too or the build stops with EACCES.
        prune = ("USER root", *prune)
    return Plan(
        runtimes=(_platform_prefix(context) + runtime,),
        artifacts=(Artifact(workdir, workdir),),
        rewrites=(),
        note="devDependencies are pruned before the copy",
        workdir=workdir,
        build_tail=() if pruned else prune,
    )


def _ends_as_other_user(context: Context) -> bool:
    """Tell whether the build stage's last USER is someone other than root."""
    users = [i for i in context.stage.instructions if i.keyword == "USER"]
    if not users or not users[-1].arguments:
        return False
    user = users[-1].arguments[0].split(":", 1)[0]
    return user not in ("root", "0")


# -- Java ------------------------------------------------------------------------


MAVEN_GOALS = frozenset({"package", "install", "verify"})
GRADLE_TASKS = frozenset({"build", "bootJar", "assemble", "jar", "shadowJar"})


def _plan_java(context: Context) -> Plan | str | None:
    builds: list[tuple[str, Located]] = []
    for located in _commands(context):
        program = (located.command.program or "").removesuffix(".cmd")
        words = set(located.command.values())
        if program in ("mvn", "mvnw") and words & MAVEN_GOALS:
            builds.append(("target", located))
        elif program in ("gradle", "gradlew") and words & GRADLE_TASKS:
            builds.append(("build/libs", located))
    if not builds:
        jdk = context.image.repository in DATA["java"]["jdk_repositories"]
        return None if jdk else "no build step"
    entry = context.entry
    if entry is None:
        return context.entry_reason
    if _runs_toolchain(entry):
        return "entry command runs the toolchain"
    values = [word.value for word in entry]
    if (values[0] or "").rsplit("/", 1)[-1] != "java" or "-jar" not in values:
        return "entry command does not run java -jar"
    jar = entry[values.index("-jar") + 1] if values[-1] != "-jar" else None
    if jar is None or jar.value is None or "*" in jar.value:
        # TODO: java -jar target/*.jar may match the plain and the boot jar;
        # copying it needs the jar's real name, so it is skipped.
        return "jar name is not literal"
    path = _resolve(context.workdir_at(jar.instruction), jar.value)
    java = _java_version(context.image)
    if java is None:
        return "Java version unknown"
    for folder, located in reversed(builds):
        expected = _resolve(located.cwd, folder)
        if path is None or expected is None or posixpath.dirname(path) != expected:
            continue
        new = f"{FINAL_WORKDIR}/{posixpath.basename(path)}"
        runtime = DATA["java"]["runtime"].format(java=java)
        if "alpine" in context.image.tag:
            runtime += "-alpine"
        return Plan(
            runtimes=(_platform_prefix(context) + runtime,),
            artifacts=(Artifact(path, new),),
            rewrites=((jar, new),),
            note="only the jar is copied: a thin jar needs its lib folder too",
        )
    return "entry command is not the built jar"


def _java_version(image: ImageRef) -> str | None:
    tag = image.tag
    match = re.search(r"(?:temurin|openjdk|jdk|corretto|java|sapmachine)-?(\d+)", tag)
    if match is None and image.repository in DATA["java"]["jdk_repositories"]:
        match = re.match(r"(\d+)", tag)
    if match is None:
        return None
    version = match[1]
    return "8" if version == "1" else version


# -- Rust ------------------------------------------------------------------------


def _plan_rust(context: Context) -> Plan | str:
    rust = DATA["rust"]
    outputs: list[str] = []
    for located in _commands(context):
        values = located.command.values()
        if located.command.program != "cargo" or not values:
            continue
        environment = _scope(context.dockerfile, located.instruction)
        if values[0] == "install":
            home = environment.get("CARGO_HOME", "/usr/local/cargo")
            outputs.append(posixpath.join(home, "bin"))
        if values[0] != "build":
            continue
        target_dir = environment.get("CARGO_TARGET_DIR") or "target"
        base = _resolve(located.cwd, target_dir)
        if base is None:
            continue
        triple = _option_value(values, ("--target",))
        if triple:
            base = posixpath.join(base, triple)
        profile = "release" if "--release" in values or "-r" in values else "debug"
        outputs.append(posixpath.join(base, profile))
    reason = _entry_problem(context, bool(outputs))
    if reason is not None:
        return reason
    entry = context.entry
    assert entry is not None
    program = entry[0]
    assert program.value is not None
    if "/" in program.value:
        resolved = _resolve(context.workdir_at(program.instruction), program.value)
        candidates = [resolved] if resolved else []
    else:
        directories = (*DEFAULT_PATH, str(rust["cargo_bin"]))
        candidates = [posixpath.join(folder, program.value) for folder in directories]
    path = next(
        (
            candidate
            for candidate in candidates
            for output in outputs
            if posixpath.dirname(candidate) == output
        ),
        None,
    )
    if path is None:
        return "entry command is not a build output"
    new = f"{FINAL_WORKDIR}/{posixpath.basename(path)}"
    tag = context.image.tag
    platform = _platform_prefix(context)
    if "alpine" in tag:
        runtimes: tuple[str, ...] = (_alpine_runtime(tag, rust["alpine_runtime"]),)
    else:
        codename = _codename(tag, rust["default_codename"])
        dynamic = rust["dynamic_runtime"].format(codename=codename)
        if codename in ("bookworm", "bullseye", "buster") and codename in tag:
            runtimes = (rust["runtime"], dynamic)
        else:
            runtimes = (dynamic,)
    return Plan(
        runtimes=tuple(platform + runtime for runtime in runtimes),
        artifacts=(Artifact(path, new),),
        rewrites=((program, new),),
        note="files the program reads from the source tree are not copied",
    )


PLANNERS = {
    "dotnet": _plan_dotnet,
    "go": _plan_go,
    "java": _plan_java,
    "rust": _plan_rust,
    "node": _plan_node,
    "python": _plan_python,
}


# -- packages --------------------------------------------------------------------


def _installed_packages(context: Context) -> list[str]:
    """Return the packages apt-get, apt or apk install in the stage."""
    packages: list[str] = []
    for located in _commands(context):
        program = located.command.program
        values = located.command.values()
        if (
            program not in PACKAGE_INSTALLERS
            or PACKAGE_INSTALLERS[program] not in values
        ):
            continue
        start = values.index(PACKAGE_INSTALLERS[program]) + 1
        for value in values[start:]:
            if value is None or value.startswith("-"):
                continue
            packages.append(value.split("=", 1)[0])
    return packages


def _runtime_packages(context: Context, manager: str, codename: str) -> list[str] | str:
    """Return what the runtime stage must install, or why that is unknown."""
    tables = DATA["packages"]
    if manager == "apk":
        mapping = dict(tables["alpine"])
    else:
        mapping = dict(tables["debian"])
        if codename in ("bullseye", "buster"):
            mapping.update(tables["bullseye"])
    needed: list[str] = []
    for package in _installed_packages(context):
        if package in mapping:
            runtime = mapping[package]
        elif package in tables["build_only"]:
            runtime = ""
        elif package.endswith("-dev"):
            return f"no run-time package known for {package}"
        else:
            runtime = package
        if runtime and runtime not in needed:
            needed.append(runtime)
    return needed


# -- the rewrite -------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A moved instruction and the comment lines right above it."""

    instruction: Instruction
    first_line: int
    last_line: int


def _rewrite(context: Context, plan: Plan) -> tuple[tuple[Edit, ...], str] | str:
    reason = ""
    for number, runtime in enumerate(plan.runtimes):
        static = number == 0 and len(plan.runtimes) > 1
        result = _final_stage(context, plan, runtime)
        if isinstance(result, str):
            reason = reason or result
            continue
        edits = list(plan.build_edits)
        if static:
            edits.extend(plan.static_edits)
        edits.extend(_build_stage_edits(context, plan, result))
        return tuple(edits), runtime.split()[-1]
    return reason


def _final_stage(context: Context, plan: Plan, runtime: str) -> str | list[str]:
    """Return the lines of the new last stage, or why it cannot be written."""
    dockerfile = context.dockerfile
    info = _runtime_info(runtime, dockerfile.global_args)
    lower = _is_lower_case(context)
    manager = str(info["packages"])
    codename = _codename(runtime, "bookworm")
    packages = _runtime_packages(context, manager or "apt", codename)
    if isinstance(packages, str):
        return packages
    packages = [name for name in packages if name not in info["ships"]]
    if packages and not manager:
        return "run-time packages need a package manager"
    blocks = _moved_blocks(context)
    rewritten: dict[int, str] = {}
    for block in blocks:
        text = _block_text(dockerfile, block)
        if block.instruction.keyword == "HEALTHCHECK":
            own = _rewrite_healthcheck(context, block, text, plan)
            reason = _healthcheck_reason(block.instruction, info, packages)
            if own is not None and (info["shell"] or block.instruction.is_json_form):
                text = own
            elif reason:
                return reason
        for word, new in plan.rewrites:
            if word.instruction.index == block.instruction.index:
                replaced = _replace_word(dockerfile, block, text, word, new)
                if replaced is None:
                    return "cannot rewrite the entry command"
                text = replaced
        if block.instruction.keyword in ("CMD", "ENTRYPOINT") and not info["shell"]:
            if not block.instruction.is_json_form:
                converted = _to_json_form(dockerfile, block, plan)
                if converted is None:
                    return "entry command needs a shell"
                text = converted
        rewritten[block.instruction.index] = text
    user_lines = _user_lines(context, info)
    if isinstance(user_lines, str):
        return user_lines

    def keyword(word: str) -> str:
        return word.lower() if lower else word

    lines = [f"{keyword('FROM')} {runtime}"]
    carried = _carried_env(context)
    lines.extend(_arg_lines(context, [*carried, *rewritten.values(), *user_lines]))
    if packages:
        lines.append(keyword("RUN") + " " + _install_command(manager, packages))
    lines.extend(carried)
    for artifact in plan.artifacts:
        if artifact.source == plan.workdir or not artifact.destination.startswith(
            "/opt/"
        ):
            continue
        lines.append(_copy_line(context, keyword("COPY"), artifact))
    lines.extend(_keyword_case(line, lower) for line in plan.final_env)
    lines.append(f"{keyword('WORKDIR')} {plan.workdir}")
    lines.extend(
        rewritten[block.instruction.index]
        for block in blocks
        if block.instruction.keyword not in LATE
    )
    for artifact in plan.artifacts:
        if artifact.destination.startswith("/opt/"):
            continue
        lines.append(_copy_line(context, keyword("COPY"), artifact))
    lines.extend(user_lines)
    lines.extend(
        rewritten[block.instruction.index]
        for block in blocks
        if block.instruction.keyword in LATE
    )
    return lines


def _copy_line(context: Context, keyword: str, artifact: Artifact) -> str:
    return (
        f"{keyword} --from={_alias(context)} {artifact.source} {artifact.destination}"
    )


def _keyword_case(line: str, lower: bool) -> str:
    keyword, _, rest = line.partition(" ")
    return f"{keyword.lower() if lower else keyword} {rest}"


def _runtime_info(runtime: str, args: dict[str, str]) -> dict[str, Any]:
    image = _parse_image(runtime.split()[-1], args) or _parse_image("debian", {})
    assert image is not None
    table: dict[str, dict[str, Any]] = DATA["runtimes"]
    info = table.get(image.repository) or table.get(image.last)
    if info is None:
        info = table["debian"]
    info = dict(info)
    if "alpine" in image.tag or image.repository == "alpine":
        info["packages"] = "apk"
        info["tools"] = [*info["tools"], *table["alpine"]["tools"]]
    info["users"] = _runtime_users(image)
    return info


def _runtime_users(image: ImageRef) -> tuple[str, ...]:
    if image.repository.startswith("gcr.io/distroless/"):
        return ("nonroot", "nobody")
    if "dotnet" in image.repository:
        return ("app", "nobody")
    if image.last == "node":
        return ("node", "nobody")
    return ("nobody",)


def _is_lower_case(context: Context) -> bool:
    start = context.stage.from_instruction.start
    return context.dockerfile.text[start : start + 4] == "from"


def _alias(context: Context) -> str:
    words = context.stage.from_instruction.arguments
    if len(words) >= 3 and words[1].upper() == "AS":
        return words[2]
    return BUILD_ALIAS


def _moved_blocks(context: Context) -> list[Block]:
    dockerfile = context.dockerfile
    blocks = []
    previous_end = context.stage.from_instruction.last_line
    for instruction in context.stage.instructions[1:]:
        if instruction.keyword in MOVED:
            first = instruction.first_line
            while first - 1 > previous_end and dockerfile.line_text(
                first - 1
            ).lstrip().startswith("#"):
                first -= 1
            blocks.append(Block(instruction, first, instruction.last_line))
        previous_end = instruction.last_line
    return blocks


def _block_text(dockerfile: Dockerfile, block: Block) -> str:
    return dockerfile.text[
        dockerfile.line_starts[block.first_line] : dockerfile.line_end(block.last_line)
    ]


def _replace_word(
    dockerfile: Dockerfile, block: Block, text: str, word: EntryWord, new: str
) -> str | None:
    """Return ``text`` with the entry word replaced, or None if not found."""
    instruction = word.instruction
    offset = dockerfile.line_starts[block.first_line]
    start = instruction.start - offset + len(instruction.keyword)
    body = text[start:]
    if instruction.is_json_form:
        tokens = list(JSON_STRING_RE.finditer(body))
        if word.position >= len(tokens):
            return None
        token = tokens[word.position]
        if json.loads(token[0]) != word.value:
            return None
        replacement = json.dumps(new)
    else:
        tokens = [
            match
            for match in re.finditer(r"\S+", body)
            if match[0] != dockerfile.escape
        ]
        if any(_in_comment_line(body, match.start()) for match in tokens):
            return None
        if word.position >= len(tokens) or tokens[word.position][0] != word.value:
            return None
        token = tokens[word.position]
        replacement = new
    return text[: start + token.start()] + replacement + text[start + token.end() :]


def _in_comment_line(body: str, position: int) -> bool:
    line_start = body.rfind("\n", 0, position) + 1
    return body[line_start:position].lstrip().startswith("#")


def _to_json_form(dockerfile: Dockerfile, block: Block, plan: Plan) -> str | None:
    """Return a one-line exec form of a plain shell-form entry command."""
    instruction = block.instruction
    if block.first_line != instruction.first_line:
        return None
    if instruction.first_line != instruction.last_line:
        return None
    words = _words_of(instruction)
    if words is None or any(word is None for word in words):
        return None
    values = [str(word) for word in words]
    for word, new in plan.rewrites:
        if word.instruction.index == instruction.index:
            values[word.position] = new
    keyword = dockerfile.text[
        instruction.start : instruction.start + len(instruction.keyword)
    ]
    indent = dockerfile.indentation(instruction.first_line)
    return f"{indent}{keyword} {json.dumps(values)}"


def _rewrite_healthcheck(
    context: Context, block: Block, text: str, plan: Plan
) -> str | None:
    """Return the HEALTHCHECK with the artifact's new path, if it runs it."""
    instruction = block.instruction
    program = _healthcheck_program(instruction)
    path = _resolve(context.workdir_at(instruction), program) if program else None
    for artifact in plan.artifacts:
        if path is None or path != artifact.source:
            continue
        start = instruction.start - context.dockerfile.line_starts[block.first_line]
        pattern = (
            re.escape(json.dumps(program))
            if instruction.is_json_form
            else rf"(?<=\s){re.escape(program)}(?=\s|$)"
        )
        match = re.compile(pattern).search(text, start)
        if match is None:
            return None
        new = (
            json.dumps(artifact.destination)
            if instruction.is_json_form
            else (artifact.destination)
        )
        return text[: match.start()] + new + text[match.end() :]
    return None


def _healthcheck_program(instruction: Instruction) -> str:
    arguments = instruction.arguments
    if len(arguments) < 2 or arguments[0].upper() != "CMD":
        return ""
    if instruction.is_json_form:
        return arguments[1]
    words = arguments[1].split()
    return words[0] if words else ""


def _healthcheck_reason(
    instruction: Instruction, info: dict[str, Any], packages: list[str]
) -> str:
    arguments = instruction.arguments
    if not arguments or arguments[0].upper() == "NONE":
        return ""
    if not instruction.is_json_form and not info["shell"]:
        return "healthcheck needs a shell"
    name = _healthcheck_program(instruction).rsplit("/", 1)[-1]
    if name in info["tools"] or name in packages:
        return ""
    # TODO: HEALTHCHECK CMD curl ... on an image without curl is skipped;
    # installing curl in the runtime stage would undo part of the gain.
    return f"healthcheck needs {name or 'a program'} in the runtime image"


def _user_lines(context: Context, info: dict[str, Any]) -> list[str] | str:
    """Return the USER (and the RUN creating it) for the new stage."""
    user = _last(context.stage, "USER")
    if user is None or not user.arguments:
        return []
    dockerfile = context.dockerfile
    line = dockerfile.text[user.start : user.end]
    value = _expand(user.arguments[0], _scope(dockerfile, user))
    if value is None:
        return "USER is not known"
    name = value.split(":", 1)[0]
    if name.isdigit() or name == "root":
        return [line]
    creators = [
        instruction
        for instruction in context.stage.instructions
        if instruction.keyword == "RUN"
        and instruction.index < user.index
        and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", instruction.original)
        and _creates_users_only(dockerfile, instruction)
    ]
    if creators and info["shell"]:
        return [dockerfile.text[creators[-1].start : creators[-1].end], line]
    if name in info["users"] and not _names_user_in_runs(context, name):
        return [line]
    return f"user {name} is not in the runtime image"


def _creates_users_only(dockerfile: Dockerfile, instruction: Instruction) -> bool:
    scripts = scripts_of(dockerfile, instruction)
    if not scripts or instruction.first_line != instruction.last_line:
        return False
    commands = [command for script in scripts for command in script.commands]
    return bool(commands) and all(
        command.program in USER_COMMANDS for command in commands
    )


def _names_user_in_runs(context: Context, name: str) -> bool:
    """Tell whether a useradd-like command of the stage names ``name``."""
    return any(
        located.command.program in USER_COMMANDS and name in located.command.values()
        for located in _commands(context)
    )


def _carried_env(context: Context) -> list[str]:
    """Return the ENV instructions the running program may read, as written."""
    dockerfile = context.dockerfile
    ecosystem = _ecosystem(context.image) or ""
    patterns = [*DATA.get(ecosystem, {}).get("build_env", []), "PATH"]
    carried = []
    for instruction in context.stage.instructions:
        if instruction.keyword != "ENV":
            continue
        names = instruction.arguments[0::2]
        if all(_matches_any(name, patterns) for name in names):
            continue
        carried.append(dockerfile.text[instruction.start : instruction.end])
    return carried


def _matches_any(name: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        if pattern.endswith("*") and name.startswith(pattern[:-1]):
            return True
        if name == pattern:
            return True
    return False


def _arg_lines(context: Context, texts: Sequence[str]) -> list[str]:
    """Return the stage ARGs that the carried lines use, as written."""
    used = {
        match["braced"] or match["plain"]
        for text in texts
        for match in VARIABLE_RE.finditer(text)
    }
    lines = []
    for instruction in context.stage.instructions:
        if instruction.keyword != "ARG":
            continue
        names = {argument.partition("=")[0] for argument in instruction.arguments}
        if names & used:
            lines.append(context.dockerfile.text[instruction.start : instruction.end])
    return lines


def _install_command(manager: str, packages: list[str]) -> str:
    names = " ".join(packages)
    if manager == "apk":
        return f"apk add --no-cache {names}"
    return (
        "apt-get update && apt-get install -y --no-install-recommends "
        f"{names} && rm -rf /var/lib/apt/lists/*"
    )


def _build_stage_edits(
    context: Context, plan: Plan, final_lines: list[str]
) -> list[Edit]:
    """Return the edits that name the build stage, move lines and append."""
    dockerfile = context.dockerfile
    newline = dockerfile.newline
    edits: list[Edit] = []
    source = context.stage.from_instruction
    if _alias(context) == BUILD_ALIAS and len(source.arguments) < 3:
        word = " as build" if _is_lower_case(context) else " AS build"
        edits.append(insert(source.end, word))
    deleted = _deleted_lines(context)
    for first, last in _runs_of(sorted(deleted)):
        end = (
            dockerfile.line_starts[last + 1]
            if last + 1 < len(dockerfile.lines)
            else len(dockerfile.text)
        )
        edits.append(Edit(dockerfile.line_starts[first], end, ""))
    trailing = _trailing_blank_lines(context)
    last_kept = max(
        line
        for line in range(len(dockerfile.lines))
        if line not in deleted and line not in trailing
    )
    tail = "".join(
        _keyword_case(line, _is_lower_case(context)) + newline
        for line in plan.build_tail
    )
    body = tail + newline + newline.join(final_lines)
    ending = newline if dockerfile.ends_with_newline else ""
    if trailing and dockerfile.line_starts[trailing[0]] > 0:
        # FROM ... / CMD [...] / <blank>: the stage ends before the blank
        # lines, which keep their bytes.
        at = dockerfile.line_starts[trailing[0]]
        lead = "" if dockerfile.text[:at].endswith("\n") else newline
        edits.append(insert(at, f"{lead}{body}{newline}"))
        return edits
    if last_kept == len(dockerfile.lines) - 1:
        lead = "" if dockerfile.ends_with_newline else newline
        text = f"{lead}{body}{ending}"
    else:
        text = f"{body}{ending}"
    edits.append(insert(len(dockerfile.text), text))
    return edits


def _deleted_lines(context: Context) -> set[int]:
    """Return the moved lines, plus blank lines the move would leave doubled."""
    dockerfile = context.dockerfile
    deleted: set[int] = set()
    for block in _moved_blocks(context):
        deleted.update(range(block.first_line, block.last_line + 1))
    covered = {
        line
        for instruction in context.stage.instructions
        for line in range(instruction.first_line, instruction.last_line + 1)
    }
    previous = "kept"
    gap = False
    for line in range(context.stage.first_line + 1, len(dockerfile.lines)):
        if line in deleted:
            gap = True
            continue
        blank = line not in covered and not dockerfile.line_text(line).strip()
        if blank and gap and previous == "blank":
            deleted.add(line)
            continue
        previous = "blank" if blank else "kept"
        gap = False
    # Blank lines the move leaves at the end of the build stage: the new
    # stage brings its own separator. Blank lines at the end of the file
    # stay where they are, and the new stage goes in before them.
    trailing = _trailing_blank_lines(context)
    for line in range(len(dockerfile.lines) - 1, context.stage.first_line, -1):
        if line in deleted or line in trailing:
            continue
        if line in covered or dockerfile.line_text(line).strip():
            break
        deleted.add(line)
    return deleted - set(trailing)


def _trailing_blank_lines(context: Context) -> range:
    """Return the blank lines after the file's last non-blank line."""
    dockerfile = context.dockerfile
    covered = {
        line
        for instruction in context.stage.instructions
        for line in range(instruction.first_line, instruction.last_line + 1)
    }
    first = len(dockerfile.lines)
    while (
        first - 1 > context.stage.first_line
        and first - 1 not in covered
        and not dockerfile.line_text(first - 1).strip()
    ):
        first -= 1
    return range(first, len(dockerfile.lines))


def _runs_of(lines: list[int]) -> Iterator[tuple[int, int]]:
    if not lines:
        return
    first = last = lines[0]
    for line in lines[1:]:
        if line == last + 1:
            last = line
            continue
        yield first, last
        first = last = line
    yield first, last


# -- small text helpers ------------------------------------------------------------


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _expand(text: str, values: dict[str, str]) -> str | None:
    """Expand $NAME and ${NAME} from ``values``; None if one is unknown."""
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        name = match["braced"] or match["plain"]
        rest = match["rest"] or ""
        if name in values and values[name]:
            return _unquote(values[name])
        if rest.startswith((":-", "-")):
            return rest.split("-", 1)[1]
        missing = True
        return ""

    expanded = VARIABLE_RE.sub(substitute, text)
    return None if missing else expanded
