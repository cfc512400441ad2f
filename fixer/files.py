"""Find Dockerfiles, read them strictly and write them back atomically."""

from __future__ import annotations

import logging
import os
import pathlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pathspec

from fixer.errors import InputError, WriteError

logger = logging.getLogger(__name__)

BOM = "\ufeff"
DOCKERFILE_NAME_RE = re.compile(
    r"""^(
        (dockerfile|containerfile)        # Dockerfile, Containerfile
        | (dockerfile|containerfile)[._-].+  # Dockerfile.prod, -dev, _arm
        | .+\.(dockerfile|containerfile)  # api.Dockerfile
    )$""",
    re.VERBOSE | re.IGNORECASE,
)
# Files that share the naming pattern but are not Dockerfiles.
NOT_DOCKERFILE_SUFFIXES = (
    ".dockerignore",
    ".j2",
    ".jinja",
    ".jinja2",
    ".tmpl",
    ".tpl",
    ".template",
    ".md",
    ".orig",
    ".rej",
    ".bak",
    ".swp",
    ".sh",
    ".yml",
    ".yaml",
    ".json",
)
SKIPPED_DIRECTORIES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "vendor",
        "third_party",
        ".venv",
        "venv",
        ".tox",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
    }
)


@dataclass(frozen=True)
class Target:
    """A file to fix and the tree it was found in (writes stay inside it)."""

    path: pathlib.Path
    tree: pathlib.Path


@dataclass(frozen=True)
class SourceText:
    """A file's text with what must be restored on write."""

    text: str
    bom: bool
    raw: bytes


def is_dockerfile_name(name: str) -> bool:
    lowered = name.lower()
    if lowered.endswith(NOT_DOCKERFILE_SUFFIXES):
        return False
    return DOCKERFILE_NAME_RE.match(name) is not None


def find_targets(root: pathlib.Path) -> Iterator[Target]:
    """Yield the Dockerfiles under the folder ``root``, sorted, honouring
    ``.gitignore`` files and skipping VCS, dependency and vendored trees."""
    ignores: list[tuple[pathlib.Path, pathspec.GitIgnoreSpec]] = []
    for folder, subfolders, names in os.walk(root):
        here = pathlib.Path(folder)
        spec = _gitignore(here)
        if spec is not None:
            ignores.append((here, spec))
        subfolders[:] = sorted(
            name
            for name in subfolders
            if name not in SKIPPED_DIRECTORIES
            and not _ignored(here / name, ignores, is_dir=True)
        )
        for name in sorted(names):
            path = here / name
            if is_dockerfile_name(name) and not _ignored(path, ignores, is_dir=False):
                yield Target(path, root)


def _gitignore(folder: pathlib.Path) -> pathspec.GitIgnoreSpec | None:
    path = folder / ".gitignore"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _ignored(
    path: pathlib.Path,
    ignores: list[tuple[pathlib.Path, pathspec.GitIgnoreSpec]],
    is_dir: bool,
) -> bool:
    ignored = False
    for base, spec in ignores:
        try:
            relative = path.relative_to(base).as_posix()
        except ValueError:
            continue
        if is_dir:
            relative += "/"
        result = spec.check_file(relative)
        if result.include is not None:
            ignored = result.include
    return ignored


def read_source(path: pathlib.Path) -> SourceText:
    """Read a Dockerfile; raise InputError naming the file when it is not one."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError as error:
        raise InputError(f"{path}: is a directory") from error
    except FileNotFoundError as error:
        raise InputError(f"{path}: no such file or directory") from error
    except PermissionError as error:
        raise InputError(f"{path}: cannot read: permission denied") from error
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror}") from error
    return decode_source(raw, str(path))


def decode_source(raw: bytes, name: str) -> SourceText:
    """Decode bytes as a Dockerfile's UTF-8 text, or raise InputError."""
    if not raw.strip():
        raise InputError(f"{name}: empty file, nothing to fix")
    if b"\x00" in raw:
        raise InputError(f"{name}: binary file (contains NUL bytes), not a Dockerfile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{name}: not UTF-8 (byte 0x{raw[error.start]:02x} at offset "
            f"{error.start}); BuildKit reads Dockerfiles as UTF-8"
        ) from error
    bom = text.startswith(BOM)
    return SourceText(text[1:] if bom else text, bom, raw)


def encode_source(source: SourceText, text: str) -> bytes:
    return ((BOM if source.bom else "") + text).encode("utf-8")


def write_atomically(target: Target, source: SourceText, text: str) -> None:
    """Replace the file's content in one rename, keeping mode and owner.

    A symlink is written through to its target only when that target lies
    inside the tree being fixed. A file that changed on disk since it was
    read is not overwritten.
    """
    path = _write_destination(target)
    data = encode_source(source, text)
    try:
        status = path.stat()
        if path.read_bytes() != source.raw:
            raise WriteError(
                f"{target.path}: changed on disk while dfix ran; not written"
            )
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".dfix", dir=path.parent
        )
    except PermissionError as error:
        raise WriteError(f"cannot write {target.path}: permission denied") from error
    except OSError as error:
        raise WriteError(f"cannot write {target.path}: {error.strerror}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, status.st_mode & 0o7777)
        if hasattr(os, "chown"):
            try:
                os.chown(temporary, status.st_uid, status.st_gid)
            except PermissionError:
                logger.debug("could not keep the owner of %s", path)
        os.replace(temporary, path)
    except OSError as error:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise WriteError(f"cannot write {target.path}: {error.strerror}") from error
    logger.debug("wrote %s", path)


def leaves_tree(target: Target) -> bool:
    """Tell whether ``target`` is a symlink to a file outside its tree."""
    if not target.path.is_symlink():
        return False
    resolved = target.path.resolve()
    tree = target.tree.resolve()
    return resolved != tree and tree not in resolved.parents


def _write_destination(target: Target) -> pathlib.Path:
    path = target.path
    if not path.is_symlink():
        return path
    if leaves_tree(target):
        raise WriteError(
            f"{path}: is a symlink to {path.resolve()}, outside {target.tree}; "
            "not written"
        )
    return path.resolve()
