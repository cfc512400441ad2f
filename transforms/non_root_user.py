"""Run the final stage as a non-root user made with the distro's own tools.

What it does:
    Acts on the final stage when its container would start as root: no
    USER in the stage or the stages it is built FROM and an image whose
    default user is root, or a last USER of root or 0. It then adds a USER
    line after the stage's last RUN, COPY or ADD (so every install still
    runs as root) and before CMD and ENTRYPOINT, choosing the user this way:
    - after a USER root, the base image's own default user (node on node,
      101 on nginx-unprivileged) is restored, numeric when its UID is known;
      a USER root after the Dockerfile's own non-root USER is deliberate
      and skipped;
    - a non-root user the image ships is reused: node (1000) on node,
      app (1654, $APP_UID) on .NET 8 and later, nonroot (65532) on
      distroless;
    - a user the Dockerfile creates itself is reused (its useradd or
      adduser gets a --uid when it has none); names and IDs given as
      $USERNAME or ${USER_UID} are read from the stage's ARG and ENV
      defaults, so USER is numeric (1000:1000);
    - otherwise one RUN creates a system user with the family's commands:
      groupadd/useradd on Debian, Ubuntu and full RHEL-like images,
      addgroup -S/adduser -S on Alpine and BusyBox, and on ubi-minimal
      microdnf installs shadow-utils, creates the user and removes it again
      in the same RUN. Distroless, scratch and ubi-micro have no shell: they
      get only a numeric USER.
    The user is `app` with UID and GID 10001 unless configured, moved off
    any name or UID the image already uses (ubuntu is 1000 on Ubuntu
    24.04). USER is always numeric (10001:10001, 1654:1654), since
    Kubernetes' runAsNonRoot cannot check a name. Paths declared by VOLUME
    and those in the option `writable` are created and given to the user;
    the WORKDIR and application code stay root-owned and read-only.

    Two wrong user snippets are fixed on any final stage: a useradd,
    groupadd, adduser or addgroup written for another family (BusyBox's
    `adduser -D` on Debian, `useradd` on Alpine) is rewritten with the
    family's commands, and a USER placed before a step that needs root
    (a package or pip install, user management) is moved down after it.

    The file is left alone, with a skip reason, when it is a dev container
    (a path with .devcontainer, a name ending in devcontainer.dockerfile or
    dev-container.dockerfile, or a mcr.microsoft.com/devcontainers image:
    the IDE picks the user from devcontainer.json), the image is Windows,
    the family is unknown, ONBUILD RUN triggers would run as the new user,
    the entrypoint drops privileges itself (gosu, su-exec, setpriv,
    runuser, chroot --userspec, s6-overlay, supervisord, or an image such
    as postgres whose entrypoint does), the process listens on a port below
    1024 (EXPOSE, --port 80 style flags, nginx and httpd defaults, .NET
    before 8 on port 80; .NET 8 and later listen on 8080 and are fine),
    the stage builds a root file system from scratch, the WORKDIR, a
    COPY destination, the program or HOME is /root or below it (mode 700,
    so another user cannot enter it), a plain OS image (debian, alpine,
    ubi...) has no CMD or ENTRYPOINT (a base for other images, whose RUNs
    need root), the
    ENTRYPOINT or CMD program needs root or capabilities (openvpn,
    tcpdump, sshd, cron, dockerd and the others listed as
    needs_root_programs in fixer/data/images.toml), or a VOLUME or ENV
    names docker.sock, or the whole base image is a build argument
    (FROM ${IMAGE}) and the RUNs test the distro (/etc/os-release, $ID)
    or use package managers of several families.

Why:
    A process running as root in a container is root on the host's kernel:
    a container escape or a writable host mount then gives root on the
    node. Kubernetes runAsNonRoot and most admission policies reject such
    images outright.

Example:
    Before:
        FROM node:20-slim
        COPY . /app
        CMD ["node", "/app/server.js"]
    After:
        FROM node:20-slim
        COPY . /app
        USER 1000:1000
        CMD ["node", "/app/server.js"]

Fix safety:
    Unsafe. The container's process loses root: it can no longer write
    root-owned paths (the WORKDIR, /tmp excepted), bind ports below 1024
    or read root-only files, and commands added after the USER line by
    hand will run unprivileged. A rewritten adduser line creates the user
    with a fixed UID, which can differ from what the author expected.

Known gaps:
    - Entrypoint scripts are judged by name and by what the Dockerfile
      installs; their contents are not read, so a script that switches
      user with a tool installed elsewhere is not recognised.
    - A VOLUME path is given to the user without -R: files copied into it
      earlier stay root-owned.
    - Which paths the application writes is not known; the fix note names
      the WORKDIR so a reviewer can decide.
    - A USER holding a variable that cannot be resolved counts as non-root.
    - Ports set in configuration files (nginx.conf, appsettings.json) are
      not read.
    - FROM ${IMAGE} is judged by its default when the RUNs do not test
      the distro: a --build-arg naming another distro gets the default's
      commands.
    - A program needing root is recognised only as the first word of the
      ENTRYPOINT or CMD; one started by an entrypoint script is not seen.

References:
    hadolint DL3002. Docker docs: Dockerfile reference, USER.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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
from fixer.images import KnownImage, needs_root_programs, resolve_variables
from fixer.parse import Dockerfile, Instruction, Stage
from fixer.shell import Command, Script, Word, scripts_of
from fixer.stages import (
    PACKAGE_MANAGER_FAMILIES,
    base_stage_chain,
    final_stage,
    image_of,
    is_root_user,
    known_image,
    last_user,
    runs_as_root,
    stage_family,
    user_value,
)

NAME = "non-root-user"
SAFETY = Safety.UNSAFE

DEFAULT_NAME = "app"
DEFAULT_UID = 10001
NO_SHELL_FAMILIES = frozenset({"distroless", "scratch", "rhel-micro"})
BUSYBOX_FAMILIES = frozenset({"alpine", "busybox"})
SHADOW_FAMILIES = frozenset({"debian", "rhel", "rhel-minimal"})
USER_TOOLS = frozenset({"useradd", "groupadd", "adduser", "addgroup"})
# Programs that start the real process as another user.
PRIVILEGE_DROPPERS = frozenset(
    {
        "gosu",
        "su-exec",
        "setpriv",
        "runuser",
        "supervisord",
        "s6-setuidgid",
        "s6-svscan",
        "chpst",
        "setuser",
        "su",
        "sudo",
        "s6-overlay",
    }
)
PRIVILEGE_DROPPER_RE = re.compile(r"gosu|su-exec|s6-overlay|supervisor|setpriv|runuser")
PORT_FLAGS = frozenset(
    {
        "--port",
        "-p",
        "--http-port",
        "--listen",
        "--bind",
        "-b",
        "--server.port",
        "--urls",
        "--host-port",
        "--listen-port",
        "--web.listen-address",
    }
)
PORT_ENV = ("PORT", "HTTP_PORT", "SERVER_PORT", "LISTEN_PORT", "APP_PORT", "WEB_PORT")
HOST_PORT_RE = re.compile(r":(?P<port>\d{1,5})(?:/|$)")
LISTEN_ADDRESS_RE = re.compile(
    r"(\d{1,3}(\.\d{1,3}){3}|\[::\]|::|\*|localhost)?:\d{1,5}"
)
PORT_NUMBER_RE = re.compile(r"^(?P<port>\d{1,5})(?:[-/].*)?$")
ROOT_PACKAGE_COMMANDS = {
    "apt-get": {
        "install",
        "update",
        "upgrade",
        "dist-upgrade",
        "remove",
        "purge",
        "autoremove",
        "clean",
        "build-dep",
    },
    "apt": {"install", "update", "upgrade", "remove", "purge", "autoremove"},
    "apk": {"add", "del", "update", "upgrade", "fix"},
    "dnf": {"install", "remove", "update", "upgrade", "clean", "makecache"},
    "yum": {"install", "remove", "update", "upgrade", "clean", "makecache"},
    "microdnf": {"install", "remove", "update", "upgrade", "clean"},
    "tdnf": {"install", "remove", "update", "upgrade", "clean", "makecache"},
    "zypper": {"install", "in", "remove", "rm", "update", "up", "refresh", "ref"},
    "dpkg": {"-i", "--install", "-r", "--remove", "-P", "--purge"},
    "gem": {"install", "update"},
}
PIP_RE = re.compile(r"pip(\d+(\.\d+)?)?")
DEV_CONTAINER_NAMES = ("dev-container.dockerfile", "devcontainer.dockerfile")
DEV_CONTAINER_IMAGES = (
    "mcr.microsoft.com/devcontainers/",
    "mcr.microsoft.com/vscode/devcontainers/",
)
WHOLE_VARIABLE_RE = re.compile(r"\$(\w+|\{\w+(:?-[^}]*)?\})")
DISTRO_TEST_RE = re.compile(r"/etc/os-release|\bID(_LIKE)?=|\$\{?ID(_LIKE)?\b")


# Images whose own command is a shell: a final stage on one of them with no
# CMD or ENTRYPOINT is a base for other images, not an application.
OS_IMAGES = frozenset(
    {
        "debian",
        "ubuntu",
        "alpine",
        "busybox",
        "fedora",
        "centos",
        "rockylinux",
        "almalinux",
        "amazonlinux",
        "ubi",
        "ubi8",
        "ubi9",
        "ubi10",
        "ubi-minimal",
        "ubi8-minimal",
        "ubi9-minimal",
        "opensuse",
        "leap",
        "archlinux",
        "oraclelinux",
        "photon",
        "azurelinux",
        "cbl-mariner",
        "buildpack-deps",
        "scratch",
    }
)


def find_fixes(dockerfile: Dockerfile, settings: Settings) -> Iterator[Finding]:
    stage = final_stage(dockerfile)
    if stage is None:
        return
    family = stage_family(dockerfile, stage)
    as_root = runs_as_root(dockerfile, stage)
    if family in ("windows", "unknown"):
        if as_root:
            reason = "base image family unknown"
            if family == "windows":
                reason = "Windows image"
            yield Skip(NAME, stage.first_line, reason)
        return
    if not all(dockerfile.is_posix_shell(i) for i in stage.instructions):
        if as_root:
            yield Skip(NAME, stage.first_line, "RUN is not run by sh")
        return

    plan = _Plan(dockerfile, stage, family, settings)
    yield from plan.rewrite_wrong_user_commands()
    if as_root:
        yield from plan.switch_user()
    else:
        yield from plan.move_early_user()


@dataclass(frozen=True)
class _CreatedUser:
    """A user (or group) a RUN of the Dockerfile creates."""

    name: str
    uid: str | None
    uid_text: str | None
    gid: str | None
    group: str | None
    system: bool
    home: bool
    command: Command
    instruction: Instruction
    is_group: bool
    wrong: bool


class _Plan:
    """Everything the transform decides for one final stage."""

    def __init__(
        self, dockerfile: Dockerfile, stage: Stage, family: str, settings: Settings
    ) -> None:
        self.dockerfile = dockerfile
        self.stage = stage
        self.family = family
        self.known: KnownImage | None = known_image(dockerfile, stage)
        self.chain = base_stage_chain(dockerfile, stage)
        self.created = _created_users(dockerfile, self.chain, family)
        taken_names = set(self.known.taken_names if self.known else ())
        taken_uids = set(self.known.taken_uids if self.known else ())
        name = str(settings.option(NAME, "name", DEFAULT_NAME))
        uid = int(settings.option(NAME, "uid", DEFAULT_UID))
        gid = int(settings.option(NAME, "gid", uid))
        while name in taken_names:
            name = f"{name}user" if not name.endswith("user") else f"{name}1"
        while str(uid) in taken_uids:
            uid += 1
        if gid != uid:
            while str(gid) in taken_uids:
                gid += 1
        else:
            gid = uid
        self.name, self.uid, self.gid = name, str(uid), str(gid)
        self.writable = [
            str(path) for path in settings.option(NAME, "writable", [])
        ] + _volume_paths(dockerfile, self.chain)
        self.lower = _is_lower_case(dockerfile, stage.from_instruction)
        self.rewritten: dict[str, tuple[str, str]] = {}

    # -- wrong user commands ---------------------------------------------

    def rewrite_wrong_user_commands(self) -> Iterator[Finding]:
        """Rewrite useradd/adduser lines written for another family."""
        if self.family in NO_SHELL_FAMILIES:
            return
        next_uid = int(self.uid)
        groups = {user.name: user for user in self.created if user.is_group}
        for user in self.created:
            if not user.wrong or user.instruction.stage != self.stage.index:
                continue
            if user.is_group:
                group_id = user.gid or self.gid
                text = self._group_command(user.name, group_id, user.system)
                self.rewritten[user.name] = ("", group_id)
            else:
                uid = user.uid or str(next_uid)
                next_uid += 1
                group = user.group
                gid: str | None = None
                if group in groups:
                    gid = groups[group].gid or self.rewritten.get(group, ("", ""))[1]
                parts = []
                if group is None:
                    gid = uid
                    group = user.name
                    parts.append(self._group_command(user.name, gid, user.system))
                parts.append(
                    self._user_command(
                        user.name, uid, group, gid, user.system, user.home
                    )
                )
                text = " && ".join(parts)
                self.rewritten[user.name] = (uid, gid or "")
            yield Fix(
                transform=NAME,
                line=self.dockerfile.line_of(user.command.start),
                problem=f"{user.command.program} is written for another distro",
                action=f"use the {self.family} commands",
                edits=(replace(user.command.start, user.command.end, text),),
                safety=SAFETY,
                note=f"{user.command.program} here would fail on {self.family}",
            )

    # -- the stage runs as root --------------------------------------------

    def switch_user(self) -> Iterator[Finding]:
        reason = self._skip_reason()
        if reason is not None:
            yield Skip(NAME, self.stage.first_line, reason)
            return
        explicit_root = self._explicit_root()
        if explicit_root is not None:
            # USER app ... USER root: the author chose root on purpose.
            reason = "ends with an explicit USER root"
            yield Skip(NAME, explicit_root.first_line, reason)
            return
        anchor = self._anchor()
        if (
            self.dockerfile.line_text(anchor.last_line)
            .rstrip()
            .endswith(self.dockerfile.escape)
        ):
            # ENV a=1 \ as the file's last line: a new line would join it.
            yield Skip(NAME, anchor.last_line, "file ends inside a continuation")
            return
        user, run, edits = self._choose_user()
        lines = []
        if run:
            lines.extend(self._run_lines(run))
        lines.append(f"{self._keyword('USER')} {user}")
        indent = self.dockerfile.indentation(anchor.first_line)
        edits.append(
            insert_lines_after(
                self.dockerfile, anchor.last_line, [indent + line for line in lines]
            )
        )
        yield Fix(
            transform=NAME,
            # The new USER line; the lines before it are inserted with it.
            line=anchor.last_line + len(lines),
            problem="Container runs as root",
            action=f"switch to USER {user}",
            edits=tuple(edits),
            safety=SAFETY,
            note=self._note(),
        )

    def _choose_user(self) -> tuple[str, list[str], list[Edit]]:
        """Return the USER value, the commands of a RUN before it, and edits."""
        setup = self._writable_commands
        # FROM node ... USER root ... : go back to the user before root.
        restored = self._restored_user()
        if restored is not None:
            return restored, setup(restored), []
        created = [user for user in self.created if not user.is_group]
        if created:
            return self._reuse_created(created[-1])
        known = self.known
        if known is not None and known.nonroot is not None:
            user = _user_text(known.nonroot.uid, known.nonroot.gid)
            return user, setup(user), []
        user = f"{self.uid}:{self.gid}"
        if self.family in NO_SHELL_FAMILIES:
            return user, [], []
        commands = [*self._create_commands(), *setup(user)]
        return user, commands, []

    def _explicit_root(self) -> Instruction | None:
        """Return a last USER root that follows the Dockerfile's own user."""
        last = last_user(self.dockerfile, self.stage)
        if last is None:
            return None
        for member in self.chain:
            for instruction in member.instructions:
                if instruction.keyword != "USER" or instruction.index >= last.index:
                    continue
                value, _ = user_value(self.dockerfile, instruction)
                if not is_root_user(value):
                    return last
        return None

    def _restored_user(self) -> str | None:
        """Return the base image's own user after a USER root, numeric if known."""
        if last_user(self.dockerfile, self.stage) is None:
            return None
        known = self.known
        if known is not None and not known.runs_as_root:
            name = known.user.partition(":")[0]
            for user in (*([known.nonroot] if known.nonroot else []), *known.users):
                if name in (user.name, user.uid) and user.uid.isdigit():
                    return _user_text(user.uid, user.gid)
            return known.user
        return None

    def _numeric(self, text: str) -> str:
        """Turn ``appuser`` into ``10001:10001`` when the file says its IDs."""
        name, _, group = text.partition(":")
        for user in reversed(self.created):
            if user.is_group or user.name != name:
                continue
            uid, gid = self.rewritten.get(name, (user.uid, user.gid))
            if uid:
                return _user_text(uid, gid or None) if not group else f"{uid}:{group}"
        return text

    def _reuse_created(self, user: _CreatedUser) -> tuple[str, list[str], list[Edit]]:
        if user.name in self.rewritten:
            uid, gid = self.rewritten[user.name]
            value = _user_text(uid, gid or None)
            return value, self._writable_commands(value), []
        if user.uid is not None:
            value = _user_text(user.uid, user.gid)
            return value, self._writable_commands(value), []
        if user.uid_text is not None:
            # RUN useradd -u "$UID" app: the UID is only known at build time.
            value = user.uid_text if self._in_scope(user.uid_text) else user.name
            return value, self._writable_commands(value), []
        # RUN useradd -m appuser: give it a UID so USER can be numeric; every
        # command creating that name gets it (if apk ...; then adduser ...).
        edits = []
        for other in self.created:
            if other.is_group or other.name != user.name or other.uid or other.uid_text:
                continue
            short = other.command.program == "adduser" and not any(
                (word.value or "").startswith("--") for word in other.command.arguments
            )
            option = " -u " if short else " --uid "
            edits.append(insert(other.command.words[0].end, f"{option}{self.uid}"))
        value = self.uid
        return value, self._writable_commands(value), edits

    def _in_scope(self, text: str) -> bool:
        environment = self.dockerfile.environment(self.stage.instructions[-1])
        _, unresolved = resolve_variables(text, dict.fromkeys(environment, "1"))
        return not unresolved

    def _writable_commands(self, user: str) -> list[str]:
        if not self.writable or self.family in NO_SHELL_FAMILIES:
            return []
        paths = " ".join(self.writable)
        return [f"mkdir -p {paths}", f"chown {user} {paths}"]

    def _create_commands(self) -> list[str]:
        group = self._group_command(self.name, self.gid, True)
        user = self._user_command(self.name, self.uid, self.name, self.gid, True, False)
        if self.family in BUSYBOX_FAMILIES:
            return [group, user]
        known = self.known
        manager = (known.package_manager if known else "") or {
            "rhel-minimal": "microdnf"
        }.get(self.family, "")
        has_useradd = known.has_useradd if known else self.family != "rhel-minimal"
        if has_useradd or not manager:
            return [group, user]
        install = f"{manager} install -y shadow-utils"
        clean = f"{manager} clean all"
        if manager == "microdnf":
            return [install, group, user, f"{manager} remove -y shadow-utils", clean]
        return [install, group, user, clean]

    def _group_command(self, name: str, gid: str, system: bool) -> str:
        if self.family in BUSYBOX_FAMILIES:
            return f"addgroup{' -S' if system else ''} -g {gid} {name}"
        return f"groupadd{' --system' if system else ''} --gid {gid} {name}"

    def _user_command(
        self,
        name: str,
        uid: str,
        group: str,
        gid: str | None,
        system: bool,
        home: bool,
    ) -> str:
        """Return the command creating user ``name`` in group ``group``.

        useradd takes the group's number when known; BusyBox's adduser
        takes only a name.
        """
        if self.family not in BUSYBOX_FAMILIES and gid:
            group = gid
        if self.family in BUSYBOX_FAMILIES:
            flags = f"{'-S ' if system else ''}-D{'' if home else ' -H'}"
            return f"adduser {flags} -u {uid} -G {group} {name}"
        system_flag = "--system " if system else ""
        home_flag = "--create-home" if home else "--no-create-home"
        return (
            f"useradd {system_flag}--no-log-init --uid {uid} --gid {group} "
            f"{home_flag} {name}"
        )

    def _run_lines(self, commands: Sequence[str]) -> list[str]:
        escape = self.dockerfile.escape
        lines = [f"{self._keyword('RUN')} {commands[0]}"]
        for command in commands[1:]:
            lines[-1] += f" {escape}"
            lines.append(f"    && {command}")
        return lines

    def _keyword(self, keyword: str) -> str:
        return keyword.lower() if self.lower else keyword

    def _anchor(self) -> Instruction:
        """Return the instruction the new lines follow: the last that needs root."""
        for instruction in reversed(self.stage.instructions):
            # A USER root last in the stage must come before the new USER.
            if instruction.keyword in ("RUN", "COPY", "ADD", "USER"):
                return instruction
        anchor = self.stage.from_instruction
        for instruction in self.stage.instructions[1:]:
            if instruction.keyword in ("ARG", "ENV", "WORKDIR", "LABEL"):
                anchor = instruction
            else:
                break
        return anchor

    def _note(self) -> str:
        workdirs = [
            instruction.arguments[0]
            for member in self.chain
            for instruction in member.instructions
            if instruction.keyword == "WORKDIR" and instruction.arguments
        ]
        if not workdirs:
            return "the user cannot write root-owned paths; check what the app writes"
        return (
            f"the user cannot write {workdirs[-1]} (WORKDIR); list paths the app "
            "writes under option writable"
        )

    # -- skip reasons -------------------------------------------------------

    def _skip_reason(self) -> str | None:
        if self._is_dev_container():
            # The IDE picks the user: remoteUser in devcontainer.json.
            return "dev container: the user is set in devcontainer.json"
        if _distro_may_change(self.dockerfile, self.chain):
            return "base image is a build argument that may change distro"
        if _has_onbuild_run(self.chain):
            return "ONBUILD RUN triggers would run as the new user"
        dropper = self._privilege_dropper()
        if dropper is not None:
            return f"entrypoint drops privileges itself ({dropper})"
        reason = self._needs_root_reason()
        if reason is not None:
            return reason
        port = self._privileged_port()
        if port is not None:
            suggestion = (
                self.known.unprivileged
                if self.known is not None and self.known.unprivileged
                else "a port of 1024 or more"
            )
            return f"listens on port {port} below 1024; use {suggestion}"
        if self.family == "scratch" and _builds_root_filesystem(self.stage):
            return "builds a root file system from scratch"
        workdir = _workdir(self.dockerfile, self.chain)
        if workdir is not None and (
            workdir.rstrip("/") == "/root" or workdir.startswith("/root/")
        ):
            # /root is mode 700: another user cannot even enter it.
            return "WORKDIR /root is not readable by another user"
        if _uses_root_home(self.chain):
            return "the app lives in /root, which another user cannot read"
        if not _entry_words(self.chain) and self._on_plain_os_image():
            # FROM debian and nothing to run: such files are base images that
            # other Dockerfiles build FROM, and their RUNs need root. An app
            # image (FROM nginx, FROM python) inherits a command to run.
            return "no CMD or ENTRYPOINT: a base image keeps root for its users"
        return None

    def _on_plain_os_image(self) -> bool:
        name = image_of(self.dockerfile, self.stage).name.lower()
        return self.known is None or name in OS_IMAGES

    def _is_dev_container(self) -> bool:
        path = (self.dockerfile.path or "").replace("\\", "/").lower()
        if ".devcontainer" in path or path.endswith(DEV_CONTAINER_NAMES):
            return True
        image = image_of(self.dockerfile, self.stage).full_name
        return image.startswith(DEV_CONTAINER_IMAGES)

    def _privilege_dropper(self) -> str | None:
        entry_words = _entry_words(self.chain)
        for word in entry_words:
            base = word.rsplit("/", 1)[-1]
            if base in PRIVILEGE_DROPPERS:
                return base
            if word == "/init":
                return "s6-overlay"
        if "chroot" in entry_words and any(
            word.startswith("--userspec") for word in entry_words
        ):
            return "chroot --userspec"
        installed = _installed_dropper(self.dockerfile, self.chain)
        if installed is not None:
            return installed
        if self.known is not None and self.known.drops_privileges and not entry_words:
            return f"{image_of(self.dockerfile, self.stage).name} entrypoint"
        return None

    def _needs_root_reason(self) -> str | None:
        """Say why the container's program needs root, or return None.

        --cap-add gives capabilities to root only, so a program such as
        tcpdump or openvpn cannot work as another user.
        """
        entry_words = _entry_words(self.chain)
        if entry_words:
            base = entry_words[0].strip("\"'").rsplit("/", 1)[-1]
            if base in needs_root_programs():
                return f"runs {base}, which needs root or capabilities"
        for member in self.chain:
            for instruction in member.instructions:
                if instruction.keyword in ("VOLUME", "ENV") and any(
                    "docker.sock" in argument for argument in instruction.arguments
                ):
                    return "uses docker.sock, which needs root"
        return None

    def _privileged_port(self) -> int | None:
        environment = self.dockerfile.environment(self.stage.instructions[-1])
        ports: list[int] = []
        known = self.known
        if known is not None and known.port_env:
            # .NET: EXPOSE is documentation; the URLs variables decide.
            configured = [
                _ports_in(environment[name])
                for name in known.port_env
                if name in environment
            ]
            if configured:
                ports.extend(port for found in configured for port in found)
            else:
                ports.extend(known.ports)
        else:
            if known is not None:
                ports.extend(known.ports)
            ports.extend(_exposed_ports(self.dockerfile, self.chain, environment))
            for name in PORT_ENV:
                if name in environment:
                    ports.extend(_ports_in(environment[name]))
        ports.extend(_flag_ports(_entry_words(self.chain)))
        low = sorted(port for port in ports if 0 < port < 1024)
        return low[0] if low else None

    # -- a USER before steps that need root ---------------------------------

    def move_early_user(self) -> Iterator[Finding]:
        """Move a stage's USER below a later RUN that needs root."""
        users = [i for i in self.stage.instructions if i.keyword == "USER"]
        if not users:
            return
        user = users[-1]
        value, _ = user_value(self.dockerfile, user)
        if is_root_user(value):
            return
        later = [
            instruction
            for instruction in self.stage.instructions
            if instruction.index > user.index
        ]
        needing = [i for i in later if i.keyword == "RUN" and self._needs_root(i)]
        if not needing:
            return
        last = needing[-1]
        between = [i for i in later if i.index < last.index]
        if any(
            i.keyword == "WORKDIR" or (i.keyword == "RUN" and not self._needs_root(i))
            for i in between
        ):
            yield Skip(NAME, user.first_line, "USER precedes steps for both users")
            return
        text = self._numeric(user.arguments[0])
        indent = self.dockerfile.indentation(user.first_line)
        start = self.dockerfile.line_starts[user.first_line]
        end_line = user.last_line + 1
        end = (
            self.dockerfile.line_starts[end_line]
            if end_line < len(self.dockerfile.lines)
            else len(self.dockerfile.text)
        )
        keyword = self.dockerfile.text[user.start : user.start + 4]
        yield Fix(
            transform=NAME,
            line=user.first_line,
            problem="USER is set before a step that needs root",
            action="move USER after it",
            edits=(
                replace(start, end, ""),
                insert_lines_after(
                    self.dockerfile, last.last_line, [f"{indent}{keyword} {text}"]
                ),
            ),
            safety=SAFETY,
            note="steps between the old and new USER now run as root",
        )

    def _needs_root(self, instruction: Instruction) -> bool:
        environment = self.dockerfile.environment(instruction)
        in_venv = "VIRTUAL_ENV" in environment or "venv" in environment.get("PATH", "")
        for script in scripts_of(self.dockerfile, instruction):
            for command in script.commands:
                if _command_needs_root(command, in_venv):
                    return True
        return False


# -- reading the Dockerfile --------------------------------------------------


def _created_users(
    dockerfile: Dockerfile, chain: Sequence[Stage], family: str
) -> list[_CreatedUser]:
    """Return the users and groups the stage chain's RUNs create, in order."""
    found: list[_CreatedUser] = []
    has_shadow = False
    for member in reversed(chain):
        for instruction in member.instructions:
            if instruction.effective_keyword != "RUN" or instruction.trigger:
                continue
            for script in scripts_of(dockerfile, instruction):
                for command in script.commands:
                    program = command.program
                    if program in ("apk", "apt-get", "dnf", "yum", "microdnf"):
                        values = command.values()
                        has_shadow = (
                            has_shadow
                            or "shadow" in values
                            or ("shadow-utils" in values)
                        )
                    if program not in USER_TOOLS or command.wrappers:
                        continue
                    user = _read_user_command(
                        _resolved(dockerfile, command, instruction),
                        instruction,
                        family,
                        has_shadow,
                    )
                    if (
                        user is not None
                        and user.wrong
                        and _is_conditional(script, command)
                    ):
                        # if apk ...; then adduser -D x; else useradd x; fi
                        # already picks the commands per distro.
                        user = dataclasses.replace(user, wrong=False)
                    if user is not None:
                        found.append(user)
    return found


def _resolved(
    dockerfile: Dockerfile, command: Command, instruction: Instruction
) -> Command:
    """Give words like $USERNAME or "${USER_UID}" the value of their ARG or ENV.

    useradd --uid $USER_UID $USERNAME after ARG USERNAME=vscode creates a
    user the Dockerfile names; a word whose variable has no value is kept.
    """
    environment: dict[str, str] = {}
    for name, value in dockerfile.environment(instruction).items():
        # ARG USER_GID=$USER_UID: expand from the values declared before.
        value, _ = resolve_variables(value.strip("\"'"), environment)
        environment[name] = value
    words = []
    for word in command.words:
        if word.value is None and "$" in word.text:
            text = word.text
            if len(text) > 1 and text[0] == text[-1] == '"':
                text = text[1:-1]
            value, unresolved = resolve_variables(text, environment)
            if not unresolved and not re.search(r"[$`\\'\"\s]", value):
                word = Word(word.text, value, word.start, word.end)
        words.append(word)
    return dataclasses.replace(command, words=tuple(words))


def _is_conditional(script: Script, command: Command) -> bool:
    """Tell whether ``command`` sits inside an if, case or || branch."""
    text = script.logical.text
    if not text.isascii():
        return True
    node = script.root.descendant_for_byte_range(
        command.logical_start, command.logical_end
    )
    while node is not None:
        if node.type in ("if_statement", "case_statement", "elif_clause"):
            return True
        if node.type == "list" and any(child.type == "||" for child in node.children):
            return True
        node = node.parent
    return False


def _read_user_command(
    command: Command, instruction: Instruction, family: str, has_shadow: bool
) -> _CreatedUser | None:
    program = command.program
    assert program is not None
    words = command.arguments
    if any(word.value is None and word.text.startswith("-") for word in words):
        return None
    busybox_style = program in ("adduser", "addgroup") and any(
        (word.value or "").startswith("-") and not (word.value or "").startswith("--")
        for word in words
    )
    long_style = any((word.value or "").startswith("--") for word in words)
    if program in ("useradd", "groupadd"):
        options, positionals = _options(words, USERADD_VALUES)
        wrong = family in BUSYBOX_FAMILIES and not has_shadow
    elif busybox_style or (family in BUSYBOX_FAMILIES and not long_style):
        options, positionals = _options(words, BUSYBOX_VALUES)
        wrong = family in SHADOW_FAMILIES and (
            family == "debian" or bool({"-D", "-S", "-H"} & set(options))
        )
    else:
        # Alpine's BusyBox accepts Debian's long options too: adduser
        # --disabled-password --gecos "" app works there.
        options, positionals = _options(words, DEBIAN_ADDUSER_VALUES)
        wrong = False
    if not positionals or positionals[0] is None:
        return None
    is_group = program in ("groupadd", "addgroup") and not (
        program == "addgroup" and len(positionals) > 1
    )
    if program == "addgroup" and len(positionals) > 1:
        # addgroup USER GROUP adds a user to a group; it creates nothing.
        return None
    uid_word = options.get("-u") or options.get("--uid")
    uid = _first(options, "-u", "--uid")
    gid = _first(options, "-g", "--gid") if is_group else None
    group = _first(options, "-G", "--ingroup") if program == "adduser" else None
    if program == "useradd":
        group = _first(options, "-g", "--gid")
    if group is not None and group.isdigit():
        gid, group = group, None
    if program == "adduser" and len(positionals) > 1:
        group = positionals[1]
    system = bool({"-S", "-r", "--system"} & set(options))
    if program == "useradd":
        home = bool({"-m", "--create-home"} & set(options))
    else:
        home = not bool({"-H", "--no-create-home"} & set(options))
    return _CreatedUser(
        name=positionals[0],
        uid=uid if uid and uid.isdigit() else None,
        uid_text=_variable_text(uid_word),
        gid=gid if gid and gid.isdigit() else None,
        group=group,
        system=system,
        home=home,
        command=command,
        instruction=instruction,
        is_group=is_group,
        wrong=wrong,
    )


USERADD_VALUES = frozenset(
    {
        "-u",
        "--uid",
        "-g",
        "--gid",
        "-G",
        "--groups",
        "-d",
        "--home-dir",
        "-s",
        "--shell",
        "-c",
        "--comment",
        "-e",
        "--expiredate",
        "-f",
        "--inactive",
        "-k",
        "--skel",
        "-K",
        "--key",
        "-p",
        "--password",
        "-R",
        "--root",
        "-P",
        "--prefix",
        "-Z",
        "--selinux-user",
        "-b",
        "--base-dir",
    }
)
BUSYBOX_VALUES = frozenset({"-h", "-g", "-s", "-G", "-u", "-k"})
DEBIAN_ADDUSER_VALUES = frozenset(
    {
        "--uid",
        "--gid",
        "--home",
        "--shell",
        "--ingroup",
        "--gecos",
        "--comment",
        "--firstuid",
        "--lastuid",
        "--firstgid",
        "--lastgid",
        "--conf",
        "--add-extra-groups",
    }
)


def _options(
    words: Sequence[Word], with_value: frozenset[str]
) -> tuple[dict[str, Word | None], list[str | None]]:
    """Split option words (-u 1000, --uid=1000, -DH, -u1000) from the rest.

    An option maps to the word holding its value, or None for a flag.
    """
    options: dict[str, Word | None] = {}
    positionals: list[str | None] = []
    index = 0
    while index < len(words):
        word = words[index]
        value = word.value
        index += 1
        if value is None or not value.startswith("-") or value == "-":
            positionals.append(value)
            continue
        if value.startswith("--"):
            name, equals, attached = value.partition("=")
            if equals:
                options[name] = _part(word, attached)
            elif name in with_value and index < len(words):
                options[name] = words[index]
                index += 1
            else:
                options[name] = None
            continue
        for position, letter in enumerate(value[1:], start=1):
            flag = f"-{letter}"
            if flag in with_value:
                rest = value[position + 1 :]
                if rest:
                    options[flag] = _part(word, rest)
                elif index < len(words):
                    options[flag] = words[index]
                    index += 1
                break
            options[flag] = None
    return options, positionals


def _part(word: Word, value: str) -> Word:
    """Return the tail ``value`` of ``word`` (--uid=1000, -u1000) as a word."""
    return Word(value, value, word.end - len(value), word.end)


def _first(options: dict[str, Word | None], *names: str) -> str | None:
    for name in names:
        word = options.get(name)
        if word is not None and word.value:
            return word.value
    return None


def _variable_text(word: Word | None) -> str | None:
    """Return ``$UID`` for a word "$UID" or ${UID}; None for anything else."""
    if word is None or word.value is not None:
        return None
    text = word.text.strip('"')
    return text if re.fullmatch(r"\$(\w+|\{\w+\})", text) else None


SYSTEM_PATHS = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/dev/shm",
        "/etc",
        "/home",
        "/lib",
        "/lib64",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/run",
        "/var/tmp",
        "/var/cache",
    }
)


def _volume_paths(dockerfile: Dockerfile, chain: Sequence[Stage]) -> list[str]:
    """Return VOLUME paths to give to the user; system folders are never given."""
    paths: list[str] = []
    for member in reversed(chain):
        for instruction in member.instructions:
            if instruction.keyword != "VOLUME":
                continue
            for path in instruction.arguments:
                for part in path.split():
                    part = part.rstrip("/") or "/"
                    if part in SYSTEM_PATHS or part in paths:
                        continue
                    if part.startswith("/") and "$" not in part:
                        paths.append(part)
    return paths


def _workdir(dockerfile: Dockerfile, chain: Sequence[Stage]) -> str | None:
    """Return the WORKDIR in effect at the end of the stage chain, or None."""
    path: str | None = None
    for member in reversed(chain):
        for instruction in member.instructions:
            if instruction.keyword != "WORKDIR" or not instruction.arguments:
                continue
            value, _ = resolve_variables(
                instruction.arguments[0], dockerfile.environment(instruction)
            )
            if path is None or value.startswith("/"):
                path = value
            else:
                path = f"{path.rstrip('/')}/{value}"
    return path


def _is_lower_case(dockerfile: Dockerfile, instruction: Instruction) -> bool:
    end = instruction.start + len(instruction.keyword)
    return dockerfile.text[instruction.start : end].islower()


def _user_text(uid: str, gid: str | None) -> str:
    if uid.startswith("$") or not gid:
        return uid
    return f"{uid}:{gid}"


def _distro_may_change(dockerfile: Dockerfile, chain: Sequence[Stage]) -> bool:
    """Tell whether ``FROM ${IMAGE}`` may name another distro than its default.

    True when the whole image is one variable and the RUNs test the distro
    (/etc/os-release, $ID) or call package managers of several families.
    """
    if not WHOLE_VARIABLE_RE.fullmatch(chain[-1].image):
        return False
    families: set[str] = set()
    for member in chain:
        for instruction in member.instructions:
            if instruction.effective_keyword != "RUN":
                continue
            for script in scripts_of(dockerfile, instruction):
                if DISTRO_TEST_RE.search(script.logical.text):
                    return True
                families.update(
                    PACKAGE_MANAGER_FAMILIES[command.program]
                    for command in script.commands
                    if command.program in PACKAGE_MANAGER_FAMILIES
                )
    return len(families) > 1


def _uses_root_home(chain: list[Stage]) -> bool:
    """Tell whether files or the program sit under /root, or HOME is /root.

    COPY app /root/app with CMD ["/root/app"] fails for any other user,
    since /root is mode 700.
    """

    def under_root(path: str) -> bool:
        path = path.strip("\"'")
        return path.rstrip("/") in ("/root", "~") or path.startswith(("/root/", "~/"))

    for member in chain:
        for instruction in member.instructions:
            arguments = instruction.arguments
            if instruction.keyword in ("COPY", "ADD") and arguments:
                if under_root(arguments[-1]):
                    return True
            if instruction.keyword == "ENV":
                pairs = dict(zip(arguments[::2], arguments[1::2], strict=False))
                if under_root(pairs.get("HOME", "")):
                    return True
    words = _entry_words(chain)
    return bool(words) and under_root(words[0])


def _has_onbuild_run(chain: Sequence[Stage]) -> bool:
    return any(
        instruction.keyword == "ONBUILD" and instruction.trigger == "RUN"
        for member in chain
        for instruction in member.instructions
    )


def _entry_words(chain: Sequence[Stage]) -> list[str]:
    """Return the words of the ENTRYPOINT and CMD in effect."""
    words: list[str] = []
    for keyword in ("ENTRYPOINT", "CMD"):
        for member in chain:
            found = [i for i in member.instructions if i.keyword == keyword]
            if found:
                for argument in found[-1].arguments:
                    words.extend(argument.split())
                break
    return words


def _installed_dropper(dockerfile: Dockerfile, chain: Sequence[Stage]) -> str | None:
    """Return a privilege-dropping tool the stage chain installs or copies."""
    for member in chain:
        for instruction in member.instructions:
            keyword = instruction.effective_keyword
            if keyword in ("COPY", "ADD"):
                for source in instruction.arguments[:-1]:
                    found = PRIVILEGE_DROPPER_RE.search(source)
                    if found:
                        return found[0]
                source_stage = instruction.flag("from") or ""
                found = PRIVILEGE_DROPPER_RE.search(source_stage)
                if found:
                    return found[0]
            if keyword != "RUN":
                continue
            for script in scripts_of(dockerfile, instruction):
                for command in script.commands:
                    if command.program in PRIVILEGE_DROPPERS:
                        continue
                    for word in command.words:
                        found = PRIVILEGE_DROPPER_RE.search(word.text)
                        if found:
                            return found[0]
    return None


def _exposed_ports(
    dockerfile: Dockerfile, chain: Sequence[Stage], environment: dict[str, str]
) -> list[int]:
    ports: list[int] = []
    for member in chain:
        for instruction in member.instructions:
            if instruction.keyword != "EXPOSE":
                continue
            for argument in instruction.arguments:
                for part in argument.split():
                    value, unresolved = resolve_variables(part, environment)
                    found = PORT_NUMBER_RE.match(value)
                    if found and not unresolved:
                        ports.append(int(found["port"]))
    return ports


def _ports_in(text: str) -> list[int]:
    """Return the ports in ``http://+:80;https://+:443`` or ``80``."""
    ports = []
    for part in re.split(r"[;,\s]+", text.strip("\"'")):
        if part.isdigit():
            ports.append(int(part))
            continue
        found = HOST_PORT_RE.search(part)
        if found:
            ports.append(int(found["port"]))
    return ports


def _flag_ports(words: Sequence[str]) -> list[int]:
    """Return ports from --port 80, --port=80, -b 0.0.0.0:80 and the like."""
    ports: list[int] = []
    for index, word in enumerate(words):
        name, equals, attached = word.partition("=")
        if equals and name in PORT_FLAGS:
            ports.extend(_ports_in(attached))
        elif word in PORT_FLAGS and index + 1 < len(words):
            ports.extend(_ports_in(words[index + 1]))
        elif LISTEN_ADDRESS_RE.fullmatch(word):
            ports.extend(_ports_in(word))
    return ports


def _builds_root_filesystem(stage: Stage) -> bool:
    """Tell whether ``FROM scratch`` here unpacks an OS: ``ADD rootfs.tar.xz /``."""
    for instruction in stage.instructions:
        if instruction.keyword not in ("ADD", "COPY") or len(instruction.arguments) < 2:
            continue
        destination = instruction.arguments[-1]
        sources = instruction.arguments[:-1]
        if destination.rstrip("/") == "" and any(
            re.search(r"\.(tar(\.\w+)?|tgz|txz)$|rootfs", source) for source in sources
        ):
            return True
    return False


def _command_needs_root(command: Command, in_venv: bool) -> bool:
    program = command.program
    if program is None or any(
        (word.value or "").rsplit("/", 1)[-1] == "sudo" for word in command.wrappers
    ):
        return False
    values = [value or "" for value in command.values()]
    if program in USER_TOOLS or program in ("usermod", "groupmod", "chown"):
        return True
    subcommands = ROOT_PACKAGE_COMMANDS.get(program)
    if subcommands is not None:
        return any(value in subcommands for value in values)
    if PIP_RE.fullmatch(program) or (
        program.startswith("python") and values[:2] == ["-m", "pip"]
    ):
        if in_venv or "install" not in values:
            return False
        return not any(
            value in ("--user", "--target", "-t", "--prefix", "--root")
            or value.startswith(("--target=", "--prefix=", "--root="))
            for value in values
        )
    if program in ("npm", "yarn", "pnpm"):
        return ("-g" in values or "--global" in values or "global" in values) and (
            any(value in ("install", "i", "add") for value in values)
        )
    return False
