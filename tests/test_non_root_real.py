"""non-root-user's output really builds and runs as the new user.

dfix fixes each Dockerfile here, then buildah builds the result (see
tests/buildengine.py): the image's configured USER is the new numeric user,
``id -u`` inside is not 0, a pip install placed before the USER still ran as
root, and the BusyBox commands used for Alpine and BusyBox stages work. The
tests skip, saying why, when the build engine is unavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fixer.engine import Selection, fix_text
from tests import buildengine as engine

pytestmark = pytest.mark.build

PYTHON_PACKAGES = ["python3", "python3-pip", "python3-venv"]
SELECTION = Selection(select=frozenset({"non-root-user"}))
GREET = ["python3", "-c", "import hello_dfix; print(hello_dfix.greet())"]


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Callable[[str], engine.BuildResult]]:
    """Build a Dockerfile text in a context under tmp_path; remove the images."""
    with engine.builder(tmp_path, "non-root") as build:
        yield build


def _fixed(text: str) -> str:
    result = fix_text(text, "Dockerfile", SELECTION)
    assert result.bugs == []
    assert result.changed, "non-root-user left the Dockerfile unchanged"
    return result.fixed


def test_python_slim_with_pip_install_runs_as_the_new_user(
    built: Callable[[str], engine.BuildResult], tmp_path: Path
) -> None:
    engine.debian_image("docker.io/library/python:3.11-slim", PYTHON_PACKAGES)
    engine.write_package(tmp_path / "pkg")
    fixed = _fixed(
        "FROM python:3.11-slim\n"
        "WORKDIR /app\n"
        "COPY pkg ./pkg\n"
        "RUN pip install --no-cache-dir --no-index --no-build-isolation ./pkg\n"
        'CMD ["python3", "-c", "import hello_dfix; print(hello_dfix.greet())"]\n'
    )
    assert "useradd --system --no-log-init --uid 10001" in fixed

    result = built(fixed).check()

    assert engine.image_user(result.tag) == "10001:10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-u"])) == "10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-g"])) == "10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, GREET)) == "hello from dfix"
    # The application code stays root-owned: the user cannot change it.
    owner = engine.run_in_image(result.tag, ["stat", "-c", "%u", "/app/pkg"])
    assert engine.stdout_of(owner) == "0"


def test_guide_snippet_with_busybox_adduser_builds_once_fixed(
    built: Callable[[str], engine.BuildResult], tmp_path: Path
) -> None:
    engine.debian_image("docker.io/library/python:3.11-slim", PYTHON_PACKAGES)
    engine.write_package(tmp_path / "pkg")
    guide = (
        "FROM python:3.11-slim\n"
        "\n"
        "WORKDIR /app\n"
        "\n"
        "# Create a non-root user\n"
        "RUN adduser -D appuser\n"
        "USER appuser\n"
        "\n"
        "COPY pkg ./pkg\n"
        "RUN pip install --no-cache-dir --no-index --no-build-isolation ./pkg\n"
        "\n"
        'CMD ["python3", "-c", "import hello_dfix; print(hello_dfix.greet())"]\n'
    )
    assert not built(guide).ok, "the guide's BusyBox adduser -D built on Debian"

    result = built(_fixed(guide)).check()

    assert engine.image_user(result.tag) == "10001:10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-un"])) == "appuser"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-u"])) != "0"
    assert engine.stdout_of(engine.run_in_image(result.tag, GREET)) == "hello from dfix"


def test_volume_is_writable_by_the_new_user(
    built: Callable[[str], engine.BuildResult],
) -> None:
    engine.debian_image("docker.io/library/debian:bookworm-slim")
    fixed = _fixed('FROM debian:bookworm-slim\nVOLUME /var/lib/app\nCMD ["bash"]\n')

    result = built(fixed).check()

    assert engine.image_user(result.tag) == "10001:10001"
    writable = engine.run_in_image(result.tag, ["test", "-w", "/var/lib/app"])
    assert writable.returncode == 0, writable.stderr


def test_busybox_commands_create_the_user(
    built: Callable[[str], engine.BuildResult],
) -> None:
    engine.busybox_image("docker.io/library/busybox:latest")
    fixed = _fixed('FROM busybox:latest\nCOPY Dockerfile /srv/Dockerfile\nCMD ["sh"]\n')
    assert "addgroup -S -g 10001 app" in fixed
    assert "useradd" not in fixed

    result = built(fixed).check()

    assert engine.image_user(result.tag) == "10001:10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-u"])) == "10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-un"])) == "app"


def test_useradd_written_for_debian_is_rewritten_for_busybox(
    built: Callable[[str], engine.BuildResult],
) -> None:
    engine.busybox_image("docker.io/library/busybox:latest")
    original = (
        "FROM busybox:latest\nRUN groupadd -r svc && useradd -r -g svc svc\n"
        'CMD ["sh"]\n'
    )
    assert not built(original).ok, "useradd exists in the BusyBox image"

    result = built(_fixed(original)).check()

    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-u"])) == "10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-gn"])) == "svc"
