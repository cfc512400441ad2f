"""Read image references and look up what dfix knows about their images.

``parse_image_ref`` splits a FROM image word into registry, repository, tag
and digest, resolving ``${ARG}``, ``${ARG:-default}`` and ``$ARG`` from the
ARGs declared before the first FROM. ``lookup`` matches a reference against
fixer/data/images.toml and returns a ``KnownImage``: the image's family, the
user it runs as, the non-root user it ships, its slim tag rules, the ports
its server listens on and its end-of-life date. Adding an image is a change
to that data file only.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

FAMILIES = (
    "debian",
    "alpine",
    "rhel",
    "rhel-minimal",
    "rhel-micro",
    "distroless",
    "scratch",
    "busybox",
    "windows",
    "unknown",
)
VARIABLE_RE = re.compile(
    r"""\$(?:
        \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)   # ${NAME
          (?P<operator>:?[-+?])?               # optional :- - :+ + :? ?
          (?P<word>[^}]*)                      # the default or alternative
        \}
      | (?P<plain>[A-Za-z_][A-Za-z0-9_]*)      # $NAME
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class ImageRef:
    """One image reference as written in FROM, split into its parts.

    ``tag_span`` is the offset pair of the tag within ``text`` when the tag
    is literal there. ``written_tag`` and ``written_tag_span`` give the tag
    part as written even when it holds variables (``${VERSION}-bookworm``).
    """

    text: str
    resolved: str
    registry: str | None
    repository: str
    name: str
    tag: str | None
    digest: str | None
    tag_span: tuple[int, int] | None
    has_variables: bool
    written_tag: str | None = None
    written_tag_span: tuple[int, int] | None = None

    @property
    def full_name(self) -> str:
        """Return ``registry/repository``, or the repository on Docker Hub."""
        if self.registry is None:
            return self.repository
        return f"{self.registry}/{self.repository}"

    @property
    def is_scratch(self) -> bool:
        return self.registry is None and self.repository == "library/scratch"


@dataclass(frozen=True)
class ImageUser:
    """A user an image ships. ``uid``/``gid`` may be a variable (``$APP_UID``)."""

    name: str
    uid: str
    gid: str


@dataclass(frozen=True)
class SlimRule:
    """Turn a whole tag that matches ``match`` into ``to`` (re.Match.expand)."""

    match: str
    to: str
    alpine: bool = False

    def apply(self, tag: str) -> str | None:
        found = re.fullmatch(self.match, tag)
        if found is None:
            return None
        return found.expand(self.to)


@dataclass(frozen=True)
class FullVariant:
    """What an image's full tag carries that its slim tag lacks."""

    build_commands: frozenset[str]
    build_packages: frozenset[str]
    native_pip: frozenset[str]
    native_commands: frozenset[str]
    tools: Mapping[str, str]


@dataclass(frozen=True)
class KnownImage:
    """What the data file says about one image at one tag."""

    key: str
    family: str
    package_manager: str
    has_useradd: bool
    user: str
    nonroot: ImageUser | None
    users: tuple[ImageUser, ...]
    ports: tuple[int, ...]
    port_env: tuple[str, ...]
    drops_privileges: bool
    unprivileged: str | None
    version: str | None
    eol: datetime.date | None
    slim_rules: tuple[SlimRule, ...]
    slim_tag: str | None
    full_variant: FullVariant | None = None

    @property
    def runs_as_root(self) -> bool:
        return self.user in ("root", "0") or self.user.startswith(("root:", "0:"))

    @property
    def taken_uids(self) -> frozenset[str]:
        """Return UIDs the image already uses (as text; variables kept)."""
        shipped = [*self.users, *([self.nonroot] if self.nonroot else [])]
        return frozenset(user.uid for user in shipped)

    @property
    def taken_names(self) -> frozenset[str]:
        shipped = [*self.users, *([self.nonroot] if self.nonroot else [])]
        return frozenset(user.name for user in shipped)

    def is_slim(self, tag: str) -> bool:
        """Tell whether ``tag`` already names the small variant."""
        return self.slim_tag is not None and re.search(self.slim_tag, tag) is not None

    def slim_tag_for(self, tag: str, allow_alpine: bool = False) -> str | None:
        """Return the slim variant's tag for ``tag``, or None when none is known.

        A Debian slim variant is preferred; an Alpine one is used only when
        ``allow_alpine`` is set and no Debian one matches.
        """
        if self.is_slim(tag) or "alpine" in tag:
            return None
        for alpine in (False, True):
            if alpine and not allow_alpine:
                break
            for rule in self.slim_rules:
                if rule.alpine != alpine:
                    continue
                result = rule.apply(tag)
                if result is not None and result != tag:
                    return result
        return None


def resolve_variables(text: str, args: Mapping[str, str]) -> tuple[str, bool]:
    """Expand ``$NAME``, ``${NAME}``, ``${NAME:-default}`` and the like.

    Returns the expanded text and whether some variable could not be
    resolved (it is then left as written). An ARG without a value counts as
    unresolved: its value comes from ``--build-arg``.
    """
    unresolved = False

    def expand(match: re.Match[str]) -> str:
        nonlocal unresolved
        name = match["braced"] or match["plain"]
        operator = match["operator"] or ""
        word = match["word"] or ""
        value = args.get(name)
        if "$" in word:
            word, inner = resolve_variables(word, args)
            unresolved = unresolved or inner
        if operator in (":-", "-"):
            if value is None or (operator == ":-" and value == ""):
                return word
            return value
        if operator in (":+", "+"):
            if value is None or (operator == ":+" and value == ""):
                return ""
            return word
        if value is None or value == "":
            unresolved = True
            return match[0]
        return value

    return VARIABLE_RE.sub(expand, text), unresolved


def parse_image_ref(text: str, args: Mapping[str, str] | None = None) -> ImageRef:
    """Split an image reference; resolve its variables from ``args``."""
    resolved, has_variables = resolve_variables(text, args or {})
    rest, _, digest = resolved.partition("@")
    registry: str | None = None
    path = rest
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    tag: str | None = None
    last_slash = path.rfind("/")
    colon = path.find(":", last_slash + 1)
    if colon >= 0:
        path, tag = path[:colon], path[colon + 1 :]
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        registry = None
    if registry is None and "/" not in path and path:
        path = f"library/{path}"
    written_tag, written_span = _written_tag(text)
    literal = written_tag is not None and "$" not in written_tag
    tag_span = written_span if literal else None
    return ImageRef(
        text=text,
        resolved=resolved,
        registry=registry,
        repository=path,
        name=path.rsplit("/", 1)[-1],
        tag=tag or None,
        digest=digest or None,
        tag_span=tag_span,
        has_variables=has_variables,
        written_tag=written_tag,
        written_tag_span=written_span,
    )


def _written_tag(text: str) -> tuple[str | None, tuple[int, int] | None]:
    """Find the tag in the text as written, outside ``${...}``.

    ``python:${VERSION}-slim`` has the written tag ``${VERSION}-slim``;
    ``${IMAGE}`` has none, since its tag is inside the variable.
    """
    depth = 0
    last_slash = -1
    colon = -1
    end = len(text)
    for index, character in enumerate(text):
        if character == "{" and index > 0 and text[index - 1] == "$":
            depth += 1
        elif character == "}" and depth:
            depth -= 1
        elif depth:
            continue
        elif character == "/":
            last_slash, colon = index, -1
        elif character == ":" and colon < 0:
            colon = index
        elif character == "@":
            end = index
            break
    if colon < 0 or colon < last_slash:
        return None, None
    tag = text[colon + 1 : end]
    if not tag:
        return None, None
    return tag, (colon + 1, end)


# -- the data file -----------------------------------------------------------


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    with resources.files("fixer").joinpath("data/images.toml").open("rb") as handle:
        return tomllib.load(handle)


@lru_cache(maxsize=1)
def _entries() -> list[tuple[list[str], dict[str, Any]]]:
    entries = []
    for entry in _data()["image"]:
        patterns = [_normal_name(name) for name in entry["match"]]
        entries.append((patterns, entry))
    return entries


def _normal_name(name: str) -> str:
    ref = parse_image_ref(name)
    return ref.full_name


def _candidate_names(ref: ImageRef) -> list[str]:
    """Return the names ``ref`` is known by: itself, its mirror, its arch copy."""
    names = [ref.full_name]
    data = _data()
    for mirror in data.get("hub_mirrors", []):
        prefix = f"{mirror}/"
        if ref.full_name.startswith(prefix):
            inner = ref.full_name[len(prefix) :]
            names.append(inner if "/" in inner else f"library/{inner}")
    if ref.registry is not None and ref.repository.startswith("library/"):
        # A pull-through mirror of Docker Hub: localhost:5000/library/python.
        names.append(ref.repository)
    if ref.registry is None:
        namespace, _, image = ref.repository.partition("/")
        if namespace in data.get("arch_namespaces", []) and image and "/" not in image:
            names.append(f"library/{image}")
    return names


@lru_cache(maxsize=4096)
def lookup(ref: ImageRef) -> KnownImage | None:
    """Return what the data file says about ``ref`` at its tag, or None."""
    if "$" in ref.repository or "$" in (ref.registry or ""):
        return None
    names = _candidate_names(ref)
    for patterns, entry in _entries():
        for pattern in patterns:
            if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                return _known_image(pattern, entry, ref.tag or "latest")
    return None


@lru_cache(maxsize=1)
def needs_root_programs() -> frozenset[str]:
    """Return programs that need root or capabilities to run at all."""
    return frozenset(str(name) for name in _data().get("needs_root_programs", []))


def family_from_tag(tag: str | None) -> str | None:
    """Return the family an unknown image's tag names: ``x:1.2-alpine``."""
    if not tag:
        return None
    for rule in _data().get("tag_family", []):
        if re.search(rule["tag"], tag.lower()):
            return str(rule["family"])
    return None


def _known_image(key: str, entry: dict[str, Any], tag: str) -> KnownImage:
    fields = dict(entry)
    lower = tag.lower()
    variant_family = False
    for variant in entry.get("variant", []):
        if re.search(variant["tag"], lower):
            fields.update({k: v for k, v in variant.items() if k != "tag"})
            variant_family = "family" in variant
            break
    if not variant_family:
        for rule in _data().get("tag_family", []):
            if re.search(rule["tag"], lower):
                fields.update({k: v for k, v in rule.items() if k != "tag"})
                break
    version = _version(fields.get("version"), tag)
    nonroot = fields.get("nonroot")
    return KnownImage(
        key=key,
        family=str(fields.get("family", "unknown")),
        package_manager=str(fields.get("package_manager", "")),
        has_useradd=bool(fields.get("useradd", True)),
        user=str(fields.get("user", "root")),
        nonroot=_user(nonroot) if nonroot else None,
        users=tuple(_user(user) for user in fields.get("users", [])),
        ports=tuple(int(port) for port in fields.get("ports", [])),
        port_env=tuple(str(name) for name in fields.get("port_env", [])),
        drops_privileges=bool(fields.get("drops_privileges", False)),
        unprivileged=fields.get("unprivileged"),
        version=version,
        eol=_eol(fields.get("eol", {}), version),
        slim_rules=tuple(
            SlimRule(rule["match"], rule["to"], bool(rule.get("alpine", False)))
            for rule in fields.get("slim", [])
        ),
        slim_tag=fields.get("slim_tag"),
        full_variant=_full_variant(fields.get("full_variant")),
    )


def _full_variant(key: str | None) -> FullVariant | None:
    if not key:
        return None
    data = _data()["full_variant"][key]
    return FullVariant(
        build_commands=frozenset(data.get("build_commands", [])),
        build_packages=frozenset(data.get("build_packages", [])),
        native_pip=frozenset(data.get("native_pip", [])),
        native_commands=frozenset(data.get("native_commands", [])),
        tools=dict(data.get("tools", {})),
    )


def _user(data: Mapping[str, Any]) -> ImageUser:
    uid = str(data["uid"])
    return ImageUser(str(data["name"]), uid, str(data.get("gid", uid)))


def _version(pattern: str | None, tag: str) -> str | None:
    if not pattern:
        return None
    found = re.search(pattern, tag)
    return found["version"] if found else None


def _eol(table: Mapping[str, Any], version: str | None) -> datetime.date | None:
    if version is None:
        return None
    best: tuple[int, datetime.date] | None = None
    for key, value in table.items():
        if version == key or version.startswith(f"{key}."):
            if best is None or len(key) > best[0]:
                best = (len(key), value)
    return best[1] if best else None
