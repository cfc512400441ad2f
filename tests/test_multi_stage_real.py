"""multi-stage, proved by a real build: the split image runs and is smaller.

A Python app whose dependency is a C extension, compiled with gcc from
python3-dev, is built single-stage on a "python:3.11" image (Debian's
python3 with compilers and headers) and again after multi-stage split it
into a build stage and a "python:3.11-slim" stage that gets only the venv.
Both images are made offline by tests/buildengine.py and run with buildah.
"""

from __future__ import annotations

import pathlib
import textwrap
import uuid

import pytest

from fixer.engine import Selection, fix_text
from transforms import multi_stage

pytestmark = pytest.mark.build

engine = pytest.importorskip(
    "tests.buildengine", reason="tests/buildengine.py (the build harness) is absent"
)

FULL_PACKAGES = (
    "python3",
    "python3-dev",
    "python3-pip",
    "python3-venv",
    "python3-setuptools",
    "gcc",
    "libc6-dev",
)
SLIM_PACKAGES = ("python3",)

DOCKERFILE = """\
# A C extension compiled at build time, on the full python image.
FROM python:3.11
WORKDIR /app
COPY ext ./ext
RUN pip install --no-build-isolation --no-index ./ext
COPY app.py .
CMD ["python3", "app.py"]
"""

SETUP_PY = """\
from setuptools import Extension, setup

setup(
    name="fastsum",
    version="1.0",
    ext_modules=[Extension("fastsum", ["fastsum.c"])],
)
"""

FASTSUM_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *total(PyObject *self, PyObject *args) {
    long first, second;
    if (!PyArg_ParseTuple(args, "ll", &first, &second)) return NULL;
    return PyLong_FromLong(first + second);
}

static PyMethodDef methods[] = {
    {"total", total, METH_VARARGS, "Add two numbers in C."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fastsum", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit_fastsum(void) { return PyModule_Create(&module); }
"""

APP_PY = """\
import fastsum

print("total", fastsum.total(40, 2))
"""


def _context(root: pathlib.Path) -> pathlib.Path:
    (root / "ext").mkdir(parents=True)
    (root / "ext" / "setup.py").write_text(SETUP_PY)
    (root / "ext" / "fastsum.c").write_text(FASTSUM_C)
    (root / "app.py").write_text(APP_PY)
    return root


def test_split_python_image_builds_runs_and_is_smaller(tmp_path: pathlib.Path) -> None:
    engine.require_engine()
    engine.debian_image("python:3.11", FULL_PACKAGES)
    engine.debian_image("python:3.11-slim", SLIM_PACKAGES)
    context = _context(tmp_path / "context")

    result = fix_text(
        DOCKERFILE, "Dockerfile", Selection(select=frozenset({multi_stage.NAME}))
    )
    assert result.changed, result.skips
    assert "FROM python:3.11-slim\n" in result.fixed
    print("\n" + textwrap.indent(result.fixed, "    "))

    single = tmp_path / "single.Dockerfile"
    split = tmp_path / "split.Dockerfile"
    single.write_text(DOCKERFILE)
    split.write_text(result.fixed)
    suffix = uuid.uuid4().hex[:8]
    single_tag = f"localhost/dfix-tests/multi-stage-single:{suffix}"
    split_tag = f"localhost/dfix-tests/multi-stage-split:{suffix}"
    try:
        engine.build(context, single, single_tag).check()
        engine.build(context, split, split_tag).check()
        for tag in (single_tag, split_tag):
            ran = engine.run_in_image(tag, ["python3", "app.py"])
            assert ran.returncode == 0, ran.stderr
            assert ran.stdout.strip() == "total 42"
        gone = engine.run_in_image(split_tag, ["sh", "-c", "command -v gcc || true"])
        assert gone.stdout.strip() == "", "the runtime image still has gcc"
        single_size = engine.image_size(single_tag)
        split_size = engine.image_size(split_tag)
        print(f"single-stage image: {single_size / 1e6:.1f} MB")
        print(f"multi-stage image:  {split_size / 1e6:.1f} MB")
        assert split_size < single_size
    finally:
        engine.remove_image(single_tag)
        engine.remove_image(split_tag)
