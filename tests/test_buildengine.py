"""The real container-build harness (tests/buildengine.py) builds and runs images.

These tests build with buildah as root; they skip, saying why, where it cannot
run (run .ci/install-build-engine as root first). The first run makes the base
images, later runs reuse them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import buildengine as engine

pytestmark = pytest.mark.build

PYTHON_PACKAGES = ["python3", "python3-pip", "python3-venv"]
DEBIAN_USER_SETUP = (
    "RUN groupadd --system --gid 10001 app && useradd --system --no-log-init "
    "--uid 10001 --gid 10001 --no-create-home app\n"
)


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Callable[[str], engine.BuildResult]]:
    """Build a Dockerfile text in a context under tmp_path; remove the images."""
    with engine.builder(tmp_path, "check") as build:
        yield build


def test_debian_slim_with_a_numeric_non_root_user(
    built: Callable[[str], engine.BuildResult],
) -> None:
    engine.debian_image("docker.io/library/debian:bookworm-slim")
    result = built(
        "FROM debian:bookworm-slim\n" + DEBIAN_USER_SETUP + "USER 10001:10001\n"
    ).check()

    assert engine.image_user(result.tag) == "10001:10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-u"])) == "10001"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-g"])) == "10001"
    assert (
        engine.stdout_of(engine.run_in_image(result.tag, ["id", "-u"], user="0")) == "0"
    )


def test_busybox_adds_a_system_user_in_a_run(
    built: Callable[[str], engine.BuildResult],
) -> None:
    engine.busybox_image("docker.io/library/busybox:latest")
    result = built(
        "FROM busybox\nRUN addgroup -S app && adduser -S -D -G app app\nUSER app\n"
    ).check()

    assert engine.image_user(result.tag) == "app"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-un"])) == "app"
    uid = int(engine.stdout_of(engine.run_in_image(result.tag, ["id", "-u"])))
    assert 100 <= uid < 1000  # a system account
    assert engine.image_size("busybox") < 10_000_000


def test_pip_installs_a_local_package_before_the_user_line(
    built: Callable[[str], engine.BuildResult], tmp_path: Path
) -> None:
    engine.debian_image("docker.io/library/python:3.11-slim", PYTHON_PACKAGES)
    engine.write_package(tmp_path / "pkg")
    result = built(
        "FROM python:3.11-slim\n"
        "WORKDIR /app\n"
        "COPY pkg ./pkg\n"
        "RUN pip install --no-cache-dir --no-index --no-build-isolation ./pkg\n"
        + DEBIAN_USER_SETUP
        + "USER 10001:10001\n"
        'CMD ["python3", "-c", "import hello_dfix; print(hello_dfix.greet())"]\n'
    ).check()

    assert engine.image_user(result.tag) == "10001:10001"
    greeting = engine.run_in_image(
        result.tag, ["python3", "-c", "import hello_dfix; print(hello_dfix.greet())"]
    )
    assert engine.stdout_of(greeting) == "hello from dfix"
    assert engine.stdout_of(engine.run_in_image(result.tag, ["id", "-u"])) == "10001"
    no_cache = engine.run_in_image(
        result.tag, ["test", "!", "-e", "/root/.cache/pip"], user="0"
    )
    assert no_cache.returncode == 0, "pip left its cache in the image"


def test_multi_stage_build_copies_a_wheel_into_a_slim_final_stage(
    built: Callable[[str], engine.BuildResult], tmp_path: Path
) -> None:
    engine.debian_image("docker.io/library/python:3.11-slim", PYTHON_PACKAGES)
    engine.debian_image("docker.io/library/debian:bookworm-slim")
    engine.write_package(tmp_path / "pkg")
    result = built(
        "FROM python:3.11-slim AS build\n"
        "COPY pkg /src/pkg\n"
        "RUN pip wheel --no-cache-dir --no-deps --no-build-isolation"
        " --wheel-dir /wheels /src/pkg\n"
        "FROM python:3.11-slim\n"
        "COPY --from=build /wheels /wheels\n"
        "RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels\n"
        + DEBIAN_USER_SETUP
        + "USER 10001:10001\n"
    ).check()

    out = engine.run_in_image(
        result.tag, ["python3", "-c", "import hello_dfix; print(hello_dfix.greet())"]
    )
    assert engine.stdout_of(out) == "hello from dfix"
    assert engine.run_in_image(result.tag, ["test", "-e", "/src"]).returncode != 0
    assert engine.image_size(result.tag) > engine.image_size("debian:bookworm-slim")


def test_a_failing_build_reports_its_exit_code_and_output(
    built: Callable[[str], engine.BuildResult],
) -> None:
    engine.debian_image("docker.io/library/debian:bookworm-slim")
    result = built("FROM debian:bookworm-slim\nRUN echo about-to-fail && false\n")

    assert not result.ok
    assert result.returncode != 0
    assert "about-to-fail" in result.output
    with pytest.raises(AssertionError, match="failed with exit code"):
        result.check()
    assert not engine.image_exists(result.tag)


def test_an_image_that_is_not_local_is_never_pulled(
    built: Callable[[str], engine.BuildResult],
) -> None:
    result = built("FROM docker.io/library/no-such-image-dfix:1.0\n")

    assert not result.ok
    assert "no-such-image-dfix" in result.output


def test_images_are_reused_by_name_and_removable(
    built: Callable[[str], engine.BuildResult],
) -> None:
    name = engine.debian_image("debian:bookworm-slim")
    assert name == "docker.io/library/debian:bookworm-slim"
    assert engine.debian_image(name) == name
    assert engine.image_user(name) == ""

    result = built("FROM debian:bookworm-slim\nUSER nobody\n").check()
    assert engine.image_user(result.tag) == "nobody"
    engine.remove_image(result.tag)
    assert not engine.image_exists(result.tag)
    engine.remove_image(result.tag)  # absent: no error
    assert engine.image_exists(name)


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
        ("busybox", "docker.io/library/busybox:latest"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("quay.io/org/app", "quay.io/org/app:latest"),
        ("localhost:5000/app:1", "localhost:5000/app:1"),
        ("localhost/dfix/x", "localhost/dfix/x:latest"),
    ],
)
def test_qualify_spells_image_names_in_full(short: str, full: str) -> None:
    assert engine.qualify(short) == full


def test_the_mirror_is_read_from_one_line_and_deb822_sources() -> None:
    one_line = (
        "# deb http://ignored.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg arch=amd64] http://one.example/debian bookworm main\n"
    )
    assert list(engine._one_line_mirrors(one_line)) == ["http://one.example/debian"]
    deb822 = (
        "Types: deb\n"
        "URIs: http://off.example/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "Enabled: no\n"
        "\n"
        "Types: deb\n"
        "# a comment inside the stanza\n"
        "URIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb deb-src\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main contrib\n"
    )
    assert list(engine._deb822_mirrors(deb822)) == ["http://mirror.example/debian"]
    assert engine.debian_mirror().startswith(("http://", "https://", "file:"))
