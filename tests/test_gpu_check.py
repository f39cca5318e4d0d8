"""benchmarks/gpu_check.sh cannot rot between lent GPUs: its sections run here at quick sizes, and
.whl/'s selection (what the device image lacks, for CPython 3.12 x86_64) is checked on file names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_wheels  # noqa: E402  (a script folder, not a package)

CARRIED = ["optuna-5.1.0-py3-none-any.whl", "datasets-5.2.0-py3-none-any.whl",
           "fvcore-0.1.5.post20221221-py3-none-any.whl", "plotly-7.1.0-py3-none-any.whl",
           "optuna_dashboard-0.21.0-py3-none-any.whl", "psycopg-3.3.9-py3-none-any.whl",
           "sqlalchemy-2.1.9-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"]


def test_the_device_image_packages_are_left_out() -> None:
    image = gpu_wheels.image_packages()
    assert image["torch"] == "2.11.0" and "numpy" in image and "optuna" not in image
    wheels = [Path(name) for name in CARRIED + ["numpy-2.5.2-cp312-cp312-manylinux_2_27_x86_64.whl",
                                                "huggingface_hub-1.33.0-py3-none-any.whl"]]
    carried, provided = gpu_wheels.split_wheels(wheels, image)
    assert [w.name for w in carried] == CARRIED
    assert {gpu_wheels.wheel_project(w.name) for w in provided} == {"numpy", "huggingface-hub"}
    assert "torch" not in {gpu_wheels.wheel_project(r) for r in gpu_wheels.requirements()}


@pytest.mark.parametrize("name, fits", [
    ("sqlalchemy-2.1.9-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
    ("tokenizers-0.23.3-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
    ("multiprocess-0.70.19-py312-none-any.whl", True),
    ("bottle-0.13.5-py2.py3-none-any.whl", True),
    ("sqlalchemy-2.1.9-cp311-cp311-manylinux2014_x86_64.whl", False),
    ("psycopg_binary-3.3.9-cp312-cp312-manylinux_2_28_aarch64.whl", False),
    ("greenlet-3.0-cp312-cp312-macosx_11_0_universal2.whl", False),
])
def test_only_wheels_for_cpython_3_12_on_linux_x86_64_fit(name: str, fits: bool) -> None:
    assert gpu_wheels.fits_device(name) is fits


def test_a_wheel_folder_missing_a_package_or_carrying_the_images_is_refused(tmp_path: Path) -> None:
    def folder(names: list[str]) -> Path:
        path = tmp_path / str(len(list(tmp_path.iterdir())))
        path.mkdir()
        for name in names:
            (path / name).write_bytes(b"")
        return path

    assert "7 wheels" in gpu_wheels.check_carried(folder(CARRIED), 60)
    with pytest.raises(SystemExit, match="lacks .'fvcore'."):
        gpu_wheels.check_carried(folder([n for n in CARRIED if not n.startswith("fvcore")]), 60)
    with pytest.raises(SystemExit, match="carries what the image has: .'numpy'."):
        gpu_wheels.check_carried(folder(CARRIED + ["numpy-2.5.2-cp312-cp312-manylinux_2_27_x86_64.whl"]), 60)
    with pytest.raises(SystemExit, match="two versions"):
        gpu_wheels.check_carried(folder(CARRIED + ["optuna-5.0.0-py3-none-any.whl"]), 60)


@pytest.mark.slow
def test_every_section_runs_at_quick_sizes_and_writes_the_json_and_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "BUDGET": "900"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--here", "--quick"], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    assert set(results) == {"preflight", "proxy", "graph", "jobs", "latency", "determinism", "paper"}
    assert all(section["status"].startswith("ok") for section in results.values()), results
    assert results["preflight"]["missing"] == []
    assert results["proxy"]["batch_2"]["ms_per_step"] > 0 and results["proxy"]["batch_4"]["kernels_per_step"] > 0
    assert results["graph"]["cuda_graph"] == "skipped: needs CUDA"
    assert results["jobs"]["jobs_2"]["trained"] >= 1 and results["jobs"]["jobs_2"]["failed"] == 0
    assert results["determinism"]["loss_curve_bitwise_equal"] is True  # on a CPU, the same trial repeats exactly
    assert results["latency"]["alone"]["ms"] > 0
    assert "## jobs" in (out / "gpu_check.md").read_text()
