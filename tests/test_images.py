"""Image references are split and resolved, and known images are looked up."""

from __future__ import annotations

import datetime

import pytest

from fixer.images import FAMILIES, lookup, parse_image_ref
from fixer.parse import parse
from fixer.stages import (
    base_stage_chain,
    copied_from,
    final_stage,
    image_of,
    runs_as_root,
    stage_family,
)


def test_registry_with_port_tag_and_digest() -> None:
    ref = parse_image_ref("localhost:5000/team/app:1.2@sha256:abc")
    assert ref.registry == "localhost:5000"
    assert ref.repository == "team/app"
    assert ref.name == "app"
    assert ref.tag == "1.2"
    assert ref.digest == "sha256:abc"
    assert ref.tag_span is not None
    assert ref.text[slice(*ref.tag_span)] == "1.2"


def test_registry_port_without_tag() -> None:
    ref = parse_image_ref("localhost:5000/app")
    assert (ref.registry, ref.repository, ref.tag) == ("localhost:5000", "app", None)


def test_docker_hub_names_are_normalised() -> None:
    for text in (
        "python:3.12",
        "docker.io/python:3.12",
        "docker.io/library/python:3.12",
    ):
        ref = parse_image_ref(text)
        assert ref.registry is None
        assert ref.repository == "library/python"
        assert ref.tag == "3.12"


def test_nested_repository_paths() -> None:
    ref = parse_image_ref("mcr.microsoft.com/dotnet/core/sdk:3.1")
    assert ref.registry == "mcr.microsoft.com"
    assert ref.repository == "dotnet/core/sdk"
    assert ref.name == "sdk"


def test_arg_default_is_resolved_and_tag_span_only_for_literal_tags() -> None:
    ref = parse_image_ref("python:${PY:-3.11}-slim")
    assert ref.resolved == "python:3.11-slim"
    assert ref.tag == "3.11-slim"
    assert not ref.has_variables
    assert ref.tag_span is None
    assert ref.written_tag == "${PY:-3.11}-slim"


def test_global_args_resolve_plain_and_braced_variables() -> None:
    args = {"REGISTRY": "ghcr.io", "VERSION": "20"}
    ref = parse_image_ref("$REGISTRY/acme/node:${VERSION}-bookworm", args)
    assert ref.registry == "ghcr.io"
    assert ref.tag == "20-bookworm"


def test_unresolved_variable_is_reported() -> None:
    ref = parse_image_ref("${BASE_IMAGE}")
    assert ref.has_variables
    assert lookup(ref) is None


def test_platform_and_alias_in_any_case() -> None:
    dockerfile = parse(
        "FROM --platform=$BUILDPLATFORM golang:1.22 As Build\n"
        "RUN go build -o /app .\n"
        "FROM build AS final\n"
        'CMD ["/app"]\n'
    )
    build, final = dockerfile.stages
    assert build.name == "build"
    assert build.platform == "$BUILDPLATFORM"
    assert base_stage_chain(dockerfile, final) == [final, build]
    assert image_of(dockerfile, final).repository == "library/golang"
    assert stage_family(dockerfile, final) == "debian"


@pytest.mark.parametrize(
    ("text", "family"),
    [
        ("python:3.12", "debian"),
        ("python:3.12-alpine", "alpine"),
        ("python:3.12-slim-bookworm", "debian"),
        ("python:3.12-windowsservercore-ltsc2022", "windows"),
        ("node:20-bookworm-slim", "debian"),
        ("arm64v8/ruby:3.2", "debian"),
        ("eclipse-temurin:21-jre-alpine", "alpine"),
        ("eclipse-temurin:21-jre-ubi9-minimal", "rhel-minimal"),
        ("mcr.microsoft.com/dotnet/aspnet:8.0", "debian"),
        ("mcr.microsoft.com/dotnet/aspnet:8.0-alpine", "alpine"),
        ("mcr.microsoft.com/dotnet/runtime-deps:9.0-noble-chiseled", "distroless"),
        ("registry.access.redhat.com/ubi9/ubi-minimal:9.4", "rhel-minimal"),
        ("registry.access.redhat.com/ubi9/ubi-micro", "rhel-micro"),
        ("registry.access.redhat.com/ubi8/ubi", "rhel"),
        ("rockylinux:9", "rhel"),
        ("gcr.io/distroless/static-debian12:nonroot", "distroless"),
        ("busybox:1.36", "busybox"),
        ("ubuntu:24.04", "debian"),
        ("mcr.microsoft.com/windows/servercore:ltsc2022", "windows"),
    ],
)
def test_family_depends_on_the_tag(text: str, family: str) -> None:
    known = lookup(parse_image_ref(text))
    assert known is not None
    assert known.family == family
    assert family in FAMILIES


def test_shipped_users() -> None:
    node = lookup(parse_image_ref("node:20"))
    assert node is not None and node.nonroot is not None
    assert (node.nonroot.name, node.nonroot.uid) == ("node", "1000")
    dotnet8 = lookup(parse_image_ref("mcr.microsoft.com/dotnet/aspnet:8.0"))
    assert dotnet8 is not None and dotnet8.nonroot is not None
    assert dotnet8.nonroot.uid == "1654"
    assert dotnet8.ports == (8080,)
    dotnet5 = lookup(parse_image_ref("mcr.microsoft.com/dotnet/aspnet:5.0"))
    assert dotnet5 is not None and dotnet5.nonroot is None and dotnet5.ports == (80,)
    noble = lookup(parse_image_ref("ubuntu:24.04"))
    jammy = lookup(parse_image_ref("ubuntu:22.04"))
    assert noble is not None and "1000" in noble.taken_uids
    assert jammy is not None and "1000" not in jammy.taken_uids
    distroless = lookup(parse_image_ref("gcr.io/distroless/static-debian12:nonroot"))
    assert distroless is not None and not distroless.runs_as_root


def test_slim_tags_and_end_of_life() -> None:
    python = lookup(parse_image_ref("python:3.12-bookworm"))
    assert python is not None
    assert python.slim_tag_for("3.12-bookworm") == "3.12-slim-bookworm"
    assert python.slim_tag_for("3.12") == "3.12-slim"
    assert python.slim_tag_for("3.12-slim") is None
    assert python.slim_tag_for("3.12", allow_alpine=True) == "3.12-slim"
    node = lookup(parse_image_ref("node:20"))
    assert node is not None
    assert node.slim_tag_for("20-bookworm") == "20-bookworm-slim"
    assert node.slim_tag_for("20") == "20-slim"
    golang = lookup(parse_image_ref("golang:1.22"))
    assert golang is not None
    assert golang.slim_tag_for("1.22") is None
    assert golang.slim_tag_for("1.22", allow_alpine=True) == "1.22-alpine"
    old = lookup(parse_image_ref("python:3.8.18-slim"))
    assert old is not None and old.eol == datetime.date(2024, 10, 7)


def test_family_from_package_manager_and_inherited_stages() -> None:
    dockerfile = parse(
        "FROM example.com/base:1 AS base\n"
        "RUN apk add --no-cache curl\n"
        "FROM base\n"
        "COPY --from=base /x /x\n"
    )
    base, final = dockerfile.stages
    assert stage_family(dockerfile, base) == "alpine"
    assert stage_family(dockerfile, final) == "alpine"
    assert copied_from(dockerfile, final) == {0}
    assert final_stage(dockerfile) is final


def test_runs_as_root() -> None:
    cases = {
        "FROM python:3.12\n": True,
        "FROM python:3.12\nUSER 1000\n": False,
        "FROM python:3.12\nUSER app\nUSER root\n": True,
        "FROM python:3.12\nUSER 0:0\n": True,
        "FROM gcr.io/distroless/base:nonroot\n": False,
        "FROM example.com/unknown\n": True,
        "FROM python:3.12 AS base\nUSER 1000\nFROM base\n": False,
        "FROM scratch\nCOPY app /app\n": True,
        "ARG U=0\nFROM python:3.12\nARG U\nUSER $U\n": True,
    }
    for text, expected in cases.items():
        dockerfile = parse(text)
        stage = final_stage(dockerfile)
        assert stage is not None
        assert runs_as_root(dockerfile, stage) is expected, text
