"""Real container builds for the test suite, without a Docker daemon.

Tests use this module to prove that the Dockerfiles dfix writes really build and
run. The engine is Debian's ``buildah`` running as root with ``--isolation
chroot``; base images are made offline from the Debian mirror that apt uses:

* :func:`debian_image` tags a ``debootstrap --variant=minbase`` rootfs (made
  slim like the official ``-slim`` images, plus optional Debian packages) as,
  for example, ``docker.io/library/debian:bookworm-slim`` or
  ``docker.io/library/python:3.11-slim`` (Debian bookworm's python3 is 3.11),
  so that ``FROM python:3.11-slim`` resolves to it with ``--pull=never``.
* :func:`busybox_image` tags a BusyBox rootfs, for example as
  ``docker.io/library/busybox:latest``. Debian's busybox-static lacks the
  adduser/addgroup applets, so BusyBox is then built once from Debian's source
  with Debian's static configuration plus those applets.

Images are made once per machine and reused by name while their recipe is the
same; the debootstrap rootfs tarball, the built busybox and the downloaded
packages are cached in ``$DFIX_TEST_CACHE``, else ``$XDG_CACHE_HOME/dfix-tests``,
else ``~/.cache/dfix-tests``. Concurrent test processes wait for each other
through lock files there. ``.ci/install-build-engine`` installs the tools.

Environment: ``DFIX_SKIP_BUILD_TESTS=1`` makes :func:`engine_available` report the
engine as unavailable; ``DFIX_DEBIAN_MIRROR`` overrides the mirror found in apt's
sources; ``CONTAINERS_STORAGE_CONF`` (read by buildah) can point the images at
a storage other than the machine's default one.

Limits: buildah 1.28 (bookworm) does not build Dockerfile heredocs, and
:func:`run_in_image` runs the command given, not the image's ENTRYPOINT.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
ISOLATION = "chroot"
# Bump to rebuild cached rootfs tarballs, binaries and images after a recipe change.
RECIPE_VERSION = "1"
RECIPE_LABEL = "org.dfix.tests.recipe"
BASE_IMAGE = f"localhost/dfix-tests/debian-{SUITE}-minbase:v{RECIPE_VERSION}"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TIMEOUT = 1800.0

SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_PARTS = Path("/etc/apt/sources.list.d")

# What the official Debian -slim images leave out (their dpkg.cfg.d/docker).
_DPKG_SLIM_CONFIG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
_SLIM_DIRS = (
    "usr/share/groff",
    "usr/share/info",
    "usr/share/linda",
    "usr/share/lintian/overrides",
    "usr/share/locale",
    "usr/share/man",
)

# BusyBox applets that the Alpine-style user set-up commands need. Debian's
# busybox-static leaves them out, so the harness then builds BusyBox from
# Debian's source with Debian's static configuration plus these applets.
_USER_APPLETS = ("adduser", "addgroup", "deluser", "delgroup")
_BUSYBOX_EXTRA_CONFIG = """\
CONFIG_ADDGROUP=y
CONFIG_FEATURE_ADDUSER_TO_GROUP=y
CONFIG_ADDUSER=y
CONFIG_FEATURE_CHECK_NAMES=y
CONFIG_DELGROUP=y
CONFIG_FEATURE_DEL_USER_FROM_GROUP=y
CONFIG_DELUSER=y
CONFIG_LAST_ID=60000
CONFIG_FIRST_SYSTEM_ID=100
CONFIG_LAST_SYSTEM_ID=999
"""
_BUSYBOX_BUILD_SCRIPT = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
echo "deb-src $1 $2 main" > /etc/apt/sources.list.d/dfix-src.list
apt-get update -qq
tools="dpkg-dev gcc make libc6-dev"
unsafe=Dpkg::Options::=--force-unsafe-io
apt-get install -y -qq --no-install-recommends -o $unsafe $tools >/dev/null
cd /tmp
apt-get source -qq busybox >/dev/null
cd busybox-*/
cp /out/extra.config .config
cat debian/config/os/linux debian/config/pkg/static >> .config
yes '' | make oldconfig >/dev/null
make -j"$(nproc)" busybox >/dev/null
./busybox --list | grep -qx adduser
mkdir -p /tmp/try/etc /tmp/try/bin && cp busybox /tmp/try/bin/busybox
echo root:x:0: > /tmp/try/etc/group
chroot /tmp/try /bin/busybox addgroup -S try
grep -q '^try:x:[1-9]' /tmp/try/etc/group
cp busybox /out/busybox
"""

_PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""
_GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:8:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
"""
_SHADOW = "".join(
    f"{line.split(':', 1)[0]}:{'*' if line.startswith('root:') else '!'}::0:::::\n"
    for line in _PASSWD.splitlines()
)


class EngineError(RuntimeError):
    """A step of the harness itself (not a build under test) failed."""


@dataclass(frozen=True)
class BuildResult:
    """What ``buildah build`` did with one Dockerfile."""

    tag: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def check(self) -> BuildResult:
        """Return self, or fail the test with the end of the build log."""
        if not self.ok:
            raise AssertionError(
                f"building {self.tag} failed with exit code {self.returncode}:\n"
                + self.output[-6000:]
            )
        return self


# --------------------------------------------------------------------------
# Availability


@functools.cache
def engine_available() -> str | None:
    """Return None when real builds work here, else a one-line reason why not."""
    if os.environ.get("DFIX_SKIP_BUILD_TESTS", "") not in ("", "0"):
        return "DFIX_SKIP_BUILD_TESTS is set"
    if not hasattr(os, "geteuid") or os.uname().sysname != "Linux":
        return "not Linux: buildah with --isolation chroot needs Linux"
    if os.geteuid() != 0:
        return "not root: buildah with --isolation chroot needs root"
    for tool in ("buildah", "debootstrap", "tar", "dpkg"):
        if shutil.which(tool) is None:
            return f"{tool} missing: run .ci/install-build-engine as root"
    try:
        probe = _run(["buildah", "info"], check=False, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"buildah does not run: {exc}"
    if probe.returncode != 0:
        return f"buildah does not work here: {_last_line(probe.stderr)}"
    return None


def require_engine() -> None:
    """Skip the calling test, with the reason, when real builds cannot run."""
    reason = engine_available()
    if reason is not None:
        pytest.skip(f"container build engine unavailable: {reason}")


# --------------------------------------------------------------------------
# Images made by the harness


def qualify(tag: str) -> str:
    """Spell an image name in full: ``python:3.11-slim`` ->
    ``docker.io/library/python:3.11-slim``, ``busybox`` ->
    ``docker.io/library/busybox:latest``."""
    name, sep, digest = tag.partition("@")
    first, slash, rest = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if not sep and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + sep + digest


def debian_image(tag: str, extra_packages: Sequence[str] = ()) -> str:
    """Make (once) a Debian bookworm minbase image with ``extra_packages``, tag it
    as ``tag`` and return its full name.

    The image is slim like the official ``-slim`` images (no docs, man pages or
    locales; no apt lists) and has no ``EXTERNALLY-MANAGED`` marker, so that
    ``pip install`` works as in the official python images. Its CMD is
    ``python3`` when python3 is among the packages, else ``bash``.
    """
    name = qualify(tag)
    packages = sorted(set(extra_packages))
    for package in packages:
        if not re.fullmatch(
            r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9]+)?(=[\w.+:~\-]+)?", package
        ):
            raise ValueError(f"not a Debian package name: {package!r}")
    base_recipe = f"debian:{SUITE}:minbase:v{RECIPE_VERSION}"
    recipe = base_recipe + (":" + ",".join(packages) if packages else "")
    with _lock(f"image {name}"):
        if _recipe_of(name) == recipe:
            return name
        base = _base_image(base_recipe)
        if not packages:
            _run(["buildah", "tag", base, name])
            return name
        container = _from(base)
        try:
            with _lock("apt-archives"):
                _apt_install(container, packages)
            cmd = "python3" if "python3" in packages else "bash"
            _run(
                [
                    "buildah",
                    "config",
                    "--cmd",
                    json.dumps([cmd]),
                    "--label",
                    f"{RECIPE_LABEL}={recipe}",
                    container,
                ]
            )
            _run(
                ["buildah", "commit", "--quiet", "--format", "docker", container, name]
            )
        finally:
            _remove_container(container)
    return name


def busybox_image(tag: str = "docker.io/library/busybox:latest") -> str:
    """Make (once) a BusyBox image, tag it as ``tag`` and return its full name.

    Its rootfs is a static busybox at /bin/busybox with a symlink for every
    applet (/bin/sh, adduser, addgroup, ...), minimal /etc/passwd, /etc/group
    and /etc/shadow, /root and a sticky /tmp.
    """
    name = qualify(tag)
    binary = busybox_binary()
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    recipe = f"busybox:{digest}:v{RECIPE_VERSION}"
    with _lock(f"image {name}"):
        if _recipe_of(name) == recipe:
            return name
        applets = _run([str(binary), "--list-full"]).stdout.split()
        with tempfile.TemporaryDirectory(prefix="dfix-busybox-") as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            rootfs.write_bytes(_busybox_rootfs(binary.read_bytes(), applets))
            _commit_rootfs(rootfs, name, recipe, cmd="sh")
    return name


def busybox_binary() -> Path:
    """Return a static busybox that has the user-management applets.

    The host's busybox (Debian's busybox-static) is used when it has them;
    Debian's does not, so BusyBox is then built once from Debian's source, in a
    container of the Debian base image, and cached.
    """
    host = shutil.which("busybox")
    if host is not None and _is_static(Path(host)):
        listed = _run([host, "--list"], check=False).stdout.split()
        if all(applet in listed for applet in _USER_APPLETS):
            return Path(host)
    cached = cache_dir() / f"busybox-{SUITE}-static-users-v{RECIPE_VERSION}"
    with _lock(cached.name):
        if cached.is_file():
            return cached
        base = _base_image(f"debian:{SUITE}:minbase:v{RECIPE_VERSION}")
        container = _from(base)
        out = Path(tempfile.mkdtemp(prefix="busybox-build-", dir=cache_dir()))
        try:
            (out / "extra.config").write_text(_BUSYBOX_EXTRA_CONFIG)
            _run(
                [
                    "buildah",
                    "run",
                    "--isolation",
                    ISOLATION,
                    "--volume",
                    f"{out}:/out",
                    container,
                    "--",
                    "sh",
                    "-c",
                    _BUSYBOX_BUILD_SCRIPT,
                    "sh",
                    debian_mirror(),
                    SUITE,
                ]
            )
            built = out / "busybox"
            built.chmod(0o755)
            os.replace(built, cached)
        finally:
            _remove_container(container)
            shutil.rmtree(out, ignore_errors=True)
    return cached


# --------------------------------------------------------------------------
# Building and inspecting images under test


def build(
    context_dir: str | os.PathLike[str],
    dockerfile_path: str | os.PathLike[str],
    tag: str,
    *,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> BuildResult:
    """Build ``dockerfile_path`` in ``context_dir`` as ``tag``, never pulling.

    Runs ``buildah build --isolation chroot --pull=never --format docker`` (the
    docker format keeps HEALTHCHECK, SHELL and ONBUILD). A build that does not
    finish within ``timeout`` seconds has returncode 124.
    """
    argv = [
        "buildah",
        "build",
        "--isolation",
        ISOLATION,
        "--pull=never",
        "--format",
        "docker",
        "--file",
        os.fspath(dockerfile_path),
        "--tag",
        tag,
    ]
    for key, value in (build_args or {}).items():
        argv += ["--build-arg", f"{key}={value}"]
    if target is not None:
        argv += ["--target", target]
    argv += [*extra_args, os.fspath(context_dir)]
    started = time.monotonic()
    try:
        proc = _run(argv, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return BuildResult(
            tag,
            124,
            _text(exc.stdout),
            _text(exc.stderr) + f"\ntimed out after {timeout}s\n",
            time.monotonic() - started,
        )
    return BuildResult(
        tag, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started
    )


def image_exists(tag: str) -> bool:
    """Whether a local image answers to ``tag``."""
    return _inspect(tag) is not None


def image_config(tag: str) -> dict[str, Any]:
    """The image's OCI config (User, Env, Cmd, Entrypoint, WorkingDir, ...)."""
    data = _inspect(tag)
    if data is None:
        raise EngineError(f"no local image {tag}")
    config: dict[str, Any] = data.get("OCIv1", {}).get("config", {}) or {}
    return config


def image_user(tag: str) -> str:
    """The image's configured USER, "" when none is set."""
    return str(image_config(tag).get("User", "") or "")


def run_in_image(
    tag: str,
    argv: Sequence[str],
    *,
    user: str | None = None,
    timeout: float = 600.0,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a throwaway container of ``tag``, as the image's USER
    (or ``user``), in its WORKDIR and with its ENV; the ENTRYPOINT is not used.
    """
    container = _from(tag)
    try:
        command = ["buildah", "run", "--isolation", ISOLATION]
        if user is not None:
            command += ["--user", user]
        command += [container, "--", *argv]
        proc = _run(command, check=False, timeout=timeout)
    finally:
        _remove_container(container)
    if check:
        proc.check_returncode()
    return proc


def image_size(tag: str) -> int:
    """The image's size in bytes: the sum of its uncompressed layers."""
    data = _inspect(tag)
    if data is None:
        raise EngineError(f"no local image {tag}")
    manifest = json.loads(data["Manifest"])
    sizes = [int(layer.get("size", -1)) for layer in manifest.get("layers", [])]
    if not sizes or min(sizes) < 0:
        raise EngineError(f"no layer sizes in the manifest of {tag}")
    return sum(sizes)


def remove_image(tag: str) -> None:
    """Remove (or untag, when it has other names) a local image; no error when
    it is absent."""
    if _inspect(tag) is None:
        return
    proc = _run(["buildah", "rmi", tag], check=False)
    if proc.returncode != 0 and _inspect(tag) is not None:
        raise EngineError(f"could not remove {tag}: {_last_line(proc.stderr)}")


# --------------------------------------------------------------------------
# Debian mirror and caches


def debian_mirror() -> str:
    """The Debian mirror apt uses for bookworm main, from apt's sources."""
    override = os.environ.get("DFIX_DEBIAN_MIRROR", "").strip()
    if override:
        return override.rstrip("/")
    for uri in _apt_mirrors():
        return uri.rstrip("/")
    return DEFAULT_MIRROR


def cache_dir() -> Path:
    """Where the rootfs tarball, packages and built binaries are kept."""
    explicit = os.environ.get("DFIX_TEST_CACHE")
    if explicit:
        path = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "dfix-tests"
    path.mkdir(parents=True, exist_ok=True)
    return path


def base_rootfs_tarball() -> Path:
    """The cached, slimmed ``debootstrap --variant=minbase`` rootfs tarball."""
    arch = _run(["dpkg", "--print-architecture"]).stdout.strip()
    tarball = cache_dir() / f"debian-{SUITE}-minbase-{arch}-v{RECIPE_VERSION}.tar"
    with _lock(tarball.name):
        if tarball.is_file():
            return tarball
        debs = cache_dir() / "debootstrap-debs"
        debs.mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=cache_dir()))
        root = work / "rootfs"
        try:
            proc = _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--arch={arch}",
                    f"--cache-dir={debs}",
                    SUITE,
                    str(root),
                    debian_mirror(),
                ],
                check=False,
            )
            if proc.returncode != 0:
                log = root / "debootstrap" / "debootstrap.log"
                detail = log.read_text(errors="replace") if log.is_file() else ""
                raise EngineError(
                    f"debootstrap failed ({proc.returncode}): "
                    + (proc.stdout + proc.stderr + detail)[-3000:]
                )
            _unmount_below(work)
            _slim_rootfs(root)
            partial = work / "rootfs.tar"
            _run(
                [
                    "tar",
                    "--numeric-owner",
                    "--xattrs",
                    "--create",
                    "--file",
                    str(partial),
                    "--directory",
                    str(root),
                    "--exclude=./dev/*",
                    "--exclude=./proc/*",
                    "--exclude=./sys/*",
                    "--exclude=./tmp/*",
                    ".",
                ]
            )
            os.replace(partial, tarball)
        finally:
            _unmount_below(work)
            shutil.rmtree(work, ignore_errors=True)
    return tarball


# --------------------------------------------------------------------------
# Internals


def _apt_mirrors() -> Iterator[str]:
    """Yield the URIs of enabled ``deb`` sources for bookworm main, in apt's
    order: sources.list, then sources.list.d/*.list and *.sources by name."""
    files = [SOURCES_LIST] if SOURCES_LIST.is_file() else []
    if SOURCES_PARTS.is_dir():
        files += sorted(
            p
            for p in SOURCES_PARTS.iterdir()
            if p.suffix in (".list", ".sources") and p.is_file()
        )
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            yield from _deb822_mirrors(text)
        else:
            yield from _one_line_mirrors(text)


def _usable(uri: str) -> bool:
    return uri.split(":", 1)[0] in ("http", "https", "file")


def _one_line_mirrors(text: str) -> Iterator[str]:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 3 and words[1] == SUITE and "main" in words[2:]:
            if _usable(words[0]):
                yield words[0]


def _deb822_mirrors(text: str) -> Iterator[str]:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    for stanza in re.split(r"\n\s*\n", "\n".join(lines)):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if (
            "deb" in fields.get("types", "").split()
            and SUITE in fields.get("suites", "").split()
            and "main" in fields.get("components", "").split()
        ):
            yield from (uri for uri in fields.get("uris", "").split() if _usable(uri))


@functools.cache
def _registries_conf() -> str:
    """A registries.conf that resolves short names (``python:3.11-slim``)
    to docker.io, written to a temporary directory for this process."""
    folder = tempfile.mkdtemp(prefix="dfix-registries-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "registries.conf"
    path.write_text(
        'unqualified-search-registries = ["docker.io"]\n'
        'short-name-mode = "permissive"\n'
    )
    return str(path)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_REGISTRIES_CONF"] = _registries_conf()
    env["BUILDAH_ISOLATION"] = ISOLATION
    env.setdefault("LC_ALL", "C.UTF-8")
    return env


def _run(
    argv: Sequence[str], *, check: bool = True, timeout: float = DEFAULT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        errors="replace",
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise EngineError(
            f"{shlex.join(argv)[:300]} exited {proc.returncode}:\n"
            + (proc.stdout + proc.stderr)[-3000:]
        )
    return proc


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """Serialise makers of the same cached thing across processes."""
    locks = cache_dir() / "locks"
    locks.mkdir(exist_ok=True)
    key = hashlib.sha256(name.encode()).hexdigest()[:24]
    with open(locks / f"{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _inspect(tag: str) -> dict[str, Any] | None:
    proc = _run(["buildah", "inspect", "--type", "image", tag], check=False)
    if proc.returncode != 0:
        return None
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _recipe_of(tag: str) -> str | None:
    data = _inspect(tag)
    if data is None:
        return None
    labels = (data.get("OCIv1", {}).get("config", {}) or {}).get("Labels") or {}
    value = labels.get(RECIPE_LABEL)
    return str(value) if value is not None else None


def _from(image: str) -> str:
    return _run(["buildah", "from", "--pull=never", "--quiet", image]).stdout.strip()


def _remove_container(container: str) -> None:
    _run(["buildah", "rm", container], check=False)


def _commit_rootfs(
    rootfs: Path, name: str, recipe: str, *, cmd: str, env: Sequence[str] = ()
) -> None:
    """Commit a one-layer image of a rootfs tarball."""
    container = _run(["buildah", "from", "--quiet", "scratch"]).stdout.strip()
    try:
        _run(["buildah", "add", "--quiet", container, str(rootfs), "/"])
        settings = ["--cmd", json.dumps([cmd]), "--label", f"{RECIPE_LABEL}={recipe}"]
        for variable in (f"PATH={PATH_ENV}", *env):
            settings += ["--env", variable]
        _run(["buildah", "config", *settings, container])
        _run(["buildah", "commit", "--quiet", "--format", "docker", container, name])
    finally:
        _remove_container(container)


def _base_image(recipe: str) -> str:
    """The shared bottom layer of every Debian image: the rootfs tarball."""
    with _lock(f"image {BASE_IMAGE}"):
        if _recipe_of(BASE_IMAGE) != recipe:
            _commit_rootfs(
                base_rootfs_tarball(),
                BASE_IMAGE,
                recipe,
                cmd="bash",
                env=["LANG=C.UTF-8"],
            )
    return BASE_IMAGE


def _apt_archives() -> Path:
    path = cache_dir() / "apt-archives"
    path.mkdir(exist_ok=True)
    return path


def _apt_install(container: str, packages: Sequence[str]) -> None:
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
        "apt-get install -y -qq --no-install-recommends "
        '-o Dpkg::Options::=--force-unsafe-io "$@" >/dev/null; '
        "rm -rf /var/lib/apt/lists/*; "
        "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED"
    )
    _run(
        [
            "buildah",
            "run",
            "--isolation",
            ISOLATION,
            "--volume",
            f"{_apt_archives()}:/var/cache/apt/archives",
            container,
            "--",
            "sh",
            "-c",
            script,
            "sh",
            *packages,
        ]
    )


def _slim_rootfs(root: Path) -> None:
    """Drop what the official -slim images drop, plus apt's lists and debs."""
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(_DPKG_SLIM_CONFIG)
    for relative in _SLIM_DIRS:
        _empty_dir(root / relative)
    doc = root / "usr/share/doc"
    if doc.is_dir():
        for entry in doc.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                for child in entry.iterdir():
                    if child.name != "copyright":
                        _remove(child)
            else:
                _remove(entry)
    _empty_dir(root / "var/lib/apt/lists", keep=("partial", "lock"))
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for cache in (root / "var/cache/apt").glob("*.bin"):
        cache.unlink()
    # Host files debootstrap copies in; buildah provides its own when running.
    for host_file in ("etc/resolv.conf", "etc/hostname"):
        _remove(root / host_file)


def _empty_dir(path: Path, keep: Sequence[str] = ()) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            if child.name not in keep:
                _remove(child)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _unmount_below(path: Path) -> None:
    """Unmount what a failed debootstrap may have left mounted in its target."""
    prefix = str(path.resolve()) + "/"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    targets = [line.split()[1].replace("\\040", " ") for line in mounts if line]
    for target in sorted(targets, key=len, reverse=True):
        if target.startswith(prefix):
            subprocess.run(
                ["umount", "--lazy", target], check=False, capture_output=True
            )


def _is_static(path: Path) -> bool:
    """Whether an ELF executable has no program interpreter (PT_INTERP)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if header[:4] != b"\x7fELF":
                return False
            wide = header[4] == 2
            order = "<" if header[5] == 1 else ">"
            if wide:
                (phoff,) = struct.unpack_from(order + "Q", header, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", header, 54)
            else:
                (phoff,) = struct.unpack_from(order + "I", header, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", header, 42)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except OSError:
        return False
    for index in range(phnum):
        (kind,) = struct.unpack_from(order + "I", table, index * phentsize)
        if kind == 3:  # PT_INTERP
            return False
    return True


def _busybox_rootfs(binary: bytes, applets: Sequence[str]) -> bytes:
    """A tar of /bin/busybox, its applet links and a minimal /etc."""
    buffer = io.BytesIO()
    now = int(time.time())

    def entry(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.mtime = kind, mode, size, now
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        folders = {
            "bin": 0o755,
            "sbin": 0o755,
            "usr": 0o755,
            "usr/bin": 0o755,
            "usr/sbin": 0o755,
            "etc": 0o755,
            "root": 0o700,
            "tmp": 0o1777,
            "home": 0o755,
            "var": 0o755,
            "var/spool": 0o755,
            "var/spool/mail": 0o755,
            "var/www": 0o755,
            "dev": 0o755,
            "proc": 0o555,
            "sys": 0o555,
        }
        for folder, mode in folders.items():
            tar.addfile(entry(folder, tarfile.DIRTYPE, mode))
        tar.addfile(
            entry("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)),
            io.BytesIO(binary),
        )
        for applet in applets:
            path = applet.strip("/")
            if path in ("bin/busybox", "linuxrc") or "/" not in path:
                continue
            link = entry(path, tarfile.SYMTYPE, 0o777)
            link.linkname = "/bin/busybox"
            tar.addfile(link)
        files = {
            "etc/passwd": (_PASSWD, 0o644),
            "etc/group": (_GROUP, 0o644),
            "etc/shadow": (_SHADOW, 0o640),
            "etc/nsswitch.conf": ("hosts: files dns\n", 0o644),
        }
        for path, (text, mode) in files.items():
            data = text.encode()
            tar.addfile(entry(path, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
    return buffer.getvalue()


# -- helpers shared by the build tests ------------------------------------


def stdout_of(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def write_package(folder: Path) -> None:
    """A pure-Python distribution that pip installs without any network."""
    (folder / "hello_dfix").mkdir(parents=True)
    (folder / "hello_dfix" / "__init__.py").write_text(
        "def greet() -> str:\n    return 'hello from dfix'\n"
    )
    (folder / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        'name = "hello-dfix"\n'
        'version = "1.0"\n\n'
        "[tool.setuptools]\n"
        'packages = ["hello_dfix"]\n'
    )


@contextlib.contextmanager
def builder(folder: Path, prefix: str) -> Iterator[Callable[[str], BuildResult]]:
    """Yield a function that builds a Dockerfile text in ``folder``.

    Skips the test when the engine is unavailable; removes the images after.
    """
    require_engine()
    tags: list[str] = []

    def build_text(dockerfile: str) -> BuildResult:
        tag = f"localhost/dfix-tests/{prefix}-{uuid.uuid4().hex[:12]}"
        tags.append(tag)
        path = folder / "Dockerfile"
        path.write_text(dockerfile)
        return build(folder, path, tag)

    try:
        yield build_text
    finally:
        for tag in tags:
            remove_image(tag)
