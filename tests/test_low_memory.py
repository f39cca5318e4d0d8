"""Out of memory is one line that says how much was asked for and what the process held, never a
traceback or an `internal error`: in the command line, in a `--jobs` job, under `ulimit -v`."""

from __future__ import annotations

import errno
import io
import json
import os
import resource
import subprocess
import sys
from contextlib import redirect_stderr
from dataclasses import asdict
from pathlib import Path

import pytest

from studies import Search
from studies.errors import exit_code_of, out_of_memory
from studies.workers.jobs import JobSpec
from study_helpers import isolated_python_api, make_settings, make_tiny  # noqa: F401 (an autouse fixture)

REPO = Path(__file__).resolve().parents[1]
ALLOCATOR = ("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you tried to "
             "allocate 34359738368 bytes.")


def raising(exc: BaseException):
    def body() -> None:
        raise exc
    return body


@pytest.mark.parametrize("exc, words", [
    (MemoryError(), "an allocation did not fit"),
    (RuntimeError(ALLOCATOR), "32,768 MiB more were asked for"),
    (RuntimeError("can't start new thread"), "a new thread's stack"),
    (OSError(errno.ENOMEM, "Cannot allocate memory"), "an allocation did not fit"),
])
def test_out_of_memory_is_one_line_saying_how_much(exc: BaseException, words: str) -> None:
    err = io.StringIO()
    with redirect_stderr(err):
        code = exit_code_of(raising(exc), "decoder-nas search")
    assert code == 1
    assert err.getvalue().count("\n") == 1 and "internal error" not in err.getvalue()
    line = err.getvalue()
    assert line.startswith("decoder-nas search: error: out of memory: ") and words in line
    assert "of address space" in line  # what this process held when it ran out


def test_a_gpu_allocation_says_so() -> None:
    import torch

    line = out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0)"))
    assert line == "out of memory on the GPU: 20,480 MiB more were asked for. Free GPU memory or run fewer --jobs on it"
    assert out_of_memory(ValueError("not memory")) is None


# Below what torch takes to load (its import alone maps ~0.65 GB of address space on CPU builds) and above
# what the process needs to start and say so.
LIMIT_GIB = 0.5


def limited() -> None:
    limit = int(LIMIT_GIB * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_limited(argv: list[str], tmp_path: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, input=stdin, capture_output=True, text=True,
                          timeout=600, check=False, preexec_fn=limited,
                          env={**os.environ, "DECODER_NAS_CACHE": str(tmp_path / "cache")})


def assert_ends_out_of_memory(done: subprocess.CompletedProcess[str], prefix: str) -> None:
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    last = done.stderr.rstrip("\n").split("\n")[-1]
    assert done.returncode == 1 and last.startswith(f"{prefix}: error: out of memory: "), done.stderr
    assert f"under its limit of {LIMIT_GIB * 1024:,.0f} MiB (ulimit -v)" in last


def test_search_with_jobs_under_a_small_address_space_ends_on_one_line(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    argv = t.argv("search", "--trials", "2", "--no-presets")
    argv[argv.index("--jobs") + 1] = "2"
    assert_ends_out_of_memory(run_limited(["studies", *argv], tmp_path), "decoder-nas")


def test_a_job_under_a_small_address_space_ends_on_one_line(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    search = Search.create("s", str(t.storage), make_settings(data=str(t.corpus)), presets=False)
    spec = JobSpec("s", str(t.storage), search.settings.to_dict())
    request = json.dumps({**asdict(spec), "trials": 1, "device": "cpu"})
    assert_ends_out_of_memory(run_limited(["studies.job"], tmp_path, request + "\n"), "decoder-nas job")
