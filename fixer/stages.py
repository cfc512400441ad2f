"""Answer questions about build stages that several transforms ask.

Which stage is built from which, what image a stage really starts from
(following ``FROM <stage>`` and global ARGs), which family of Linux it is
(so a transform emits commands that exist there) and whether it runs as
root. Everything here reads the parsed Dockerfile only.
"""

from __future__ import annotations

from fixer.images import (
    ImageRef,
    KnownImage,
    family_from_tag,
    lookup,
    parse_image_ref,
    resolve_variables,
)
from fixer.parse import WINDOWS_IMAGE_MARKERS, Dockerfile, Instruction, Stage
from fixer.shell import scripts_of

# The family a package manager's use in a RUN tells, for unknown images.
PACKAGE_MANAGER_FAMILIES = {
    "apt-get": "debian",
    "apt": "debian",
    "dpkg": "debian",
    "apk": "alpine",
    "microdnf": "rhel-minimal",
    "dnf": "rhel",
    "yum": "rhel",
    "tdnf": "rhel",
}
ROOT_USERS = frozenset({"root", "0"})


def final_stage(dockerfile: Dockerfile) -> Stage | None:
    """Return the stage ``docker build`` builds without ``--target``."""
    return dockerfile.stages[-1] if dockerfile.stages else None


def parent_of(dockerfile: Dockerfile, stage: Stage) -> Stage | None:
    """Return the earlier stage this stage's FROM names, ARGs resolved."""
    image, _ = resolve_variables(stage.image, dockerfile.global_args)
    parent = dockerfile.stage_by_name(image)
    if parent is not None and parent.index < stage.index:
        return parent
    return None


def base_stage_chain(dockerfile: Dockerfile, stage: Stage) -> list[Stage]:
    """Return ``stage`` and the stages it is built FROM, nearest first.

    ``FROM build AS final`` after ``FROM python AS build`` gives
    [final, build]; the last stage in the list starts from a real image.
    """
    chain = [stage]
    parent = parent_of(dockerfile, stage)
    while parent is not None and parent not in chain:
        chain.append(parent)
        parent = parent_of(dockerfile, parent)
    return chain


def dependents(dockerfile: Dockerfile, stage: Stage) -> list[Stage]:
    """Return the stages built FROM ``stage`` or copying from it."""
    return [
        other
        for other in dockerfile.stages
        if other.index > stage.index
        and (
            parent_of(dockerfile, other) is stage
            or stage.index in copied_from(dockerfile, other)
        )
    ]


def copied_from(dockerfile: Dockerfile, stage: Stage) -> set[int]:
    """Return the indexes of earlier stages ``stage`` copies from.

    ``COPY --from=build`` and ``COPY --from=0`` count; ``COPY --from=nginx``
    names an image, not a stage, and does not.
    """
    sources: set[int] = set()
    for instruction in stage.instructions:
        if instruction.effective_keyword != "COPY":
            continue
        value = instruction.flag("from")
        if not value:
            continue
        value, _ = resolve_variables(value, dockerfile.global_args)
        if value.isdigit():
            if int(value) < stage.index:
                sources.add(int(value))
            continue
        source = dockerfile.stage_by_name(value)
        if source is not None and source.index < stage.index:
            sources.add(source.index)
    return sources


def image_of(dockerfile: Dockerfile, stage: Stage) -> ImageRef:
    """Return the real image ``stage`` starts from, through FROM <stage>."""
    root = base_stage_chain(dockerfile, stage)[-1]
    return parse_image_ref(root.image, dockerfile.global_args)


def known_image(dockerfile: Dockerfile, stage: Stage) -> KnownImage | None:
    """Return what the data file says about the image ``stage`` starts from."""
    return lookup(image_of(dockerfile, stage))


def stage_family(dockerfile: Dockerfile, stage: Stage) -> str:
    """Return the family of ``stage``: one of ``fixer.images.FAMILIES``.

    Learned from the image when the data file knows it, inherited through
    FROM <stage>, else from the package manager the stage's RUNs use.
    """
    ref = image_of(dockerfile, stage)
    if ref.is_scratch:
        return "scratch"
    known = lookup(ref)
    if known is not None and known.family != "unknown":
        return known.family
    lowered = ref.resolved.lower()
    if any(marker in lowered for marker in WINDOWS_IMAGE_MARKERS) or (
        dockerfile.escape == "`"
    ):
        return "windows"
    if not dockerfile.is_posix_shell(stage.instructions[-1]):
        return "windows"
    from_tag = family_from_tag(ref.tag)
    if from_tag is not None and "$" not in ref.repository:
        return from_tag
    manager = package_manager_used(dockerfile, stage)
    if manager is not None:
        return PACKAGE_MANAGER_FAMILIES[manager]
    return "unknown"


def package_manager_used(dockerfile: Dockerfile, stage: Stage) -> str | None:
    """Return the first package manager a RUN of the stage chain calls."""
    for member in reversed(base_stage_chain(dockerfile, stage)):
        for instruction in member.instructions:
            if instruction.effective_keyword != "RUN":
                continue
            for script in scripts_of(dockerfile, instruction):
                for command in script.commands:
                    if command.program in PACKAGE_MANAGER_FAMILIES:
                        return command.program
    return None


def last_user(dockerfile: Dockerfile, stage: Stage) -> Instruction | None:
    """Return the USER in effect at the end of ``stage``, inherited or own."""
    for member in base_stage_chain(dockerfile, stage):
        for instruction in reversed(member.instructions):
            if instruction.keyword == "USER" and instruction.arguments:
                return instruction
    return None


def user_value(dockerfile: Dockerfile, instruction: Instruction) -> tuple[str, bool]:
    """Return a USER's value with variables expanded, and whether all were."""
    scope = dict(dockerfile.global_args)
    scope.update(dockerfile.environment(instruction))
    value, unresolved = resolve_variables(instruction.arguments[0], scope)
    return value, not unresolved


def is_root_user(value: str) -> bool:
    """Tell whether a USER value (``root``, ``0:0``, ``root:staff``) is root."""
    return value.partition(":")[0] in ROOT_USERS


def runs_as_root(dockerfile: Dockerfile, stage: Stage) -> bool:
    """Tell whether a container of ``stage`` would start as root.

    True with no USER in the stage chain and an image whose default user is
    root or unknown, or when the last USER is root or 0. A USER holding a
    variable that cannot be resolved counts as not root.
    """
    instruction = last_user(dockerfile, stage)
    if instruction is not None:
        value, _ = user_value(dockerfile, instruction)
        return is_root_user(value)
    if image_of(dockerfile, stage).is_scratch:
        return True
    known = known_image(dockerfile, stage)
    return known is None or known.runs_as_root
