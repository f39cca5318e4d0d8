"""Build .whl/: the wheels a lent GPU machine needs to run decoder-nas, and nothing it already has.

    python benchmarks/gpu_wheels.py [--dest .whl] [--python-version 3.12] [--limit-mib 60]
    python benchmarks/gpu_wheels.py --local --dest .whl-rehearse   # for this interpreter, torch too

The device has no package index; its image holds torch + CUDA and many packages
(benchmarks/device_image.txt) but not optuna, datasets, fvcore, plotly, optuna-dashboard or
psycopg. This resolves setup.cfg's requirements (torch left out) for CPython 3.12 on manylinux
x86_64, with the image's known versions pinned, and keeps the wheels of the packages the image
lacks. Sdist-only pure-Python packages (fvcore, iopath) are built into py3-none-any wheels here.
The total must fit the device tool's 64 MiB per call, with room for the repository itself.

`--local` resolves for this interpreter instead, keeps every wheel (the image's packages and this
environment's torch too, nothing pinned): what `gpu_check.sh --rehearse` installs into a fresh venv
with no index, standing in for the image where the Python version differs from the device's.
"""

from __future__ import annotations

import argparse
import configparser
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_FILE = Path(__file__).resolve().parent / "device_image.txt"
SDIST_ONLY = ("fvcore", "iopath")  # published as source only; pure Python, so one wheel serves every Python
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_project(filename: str) -> str:
    """The normalized project name of a wheel file (`name-version-...whl`)."""
    return normalize(filename.split("-", 1)[0])


def image_packages(path: Path = IMAGE_FILE) -> dict[str, str | None]:
    """The device image's packages: normalized name -> pinned version (None where unknown)."""
    packages: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            packages[normalize(name)] = version or None
    return packages


def requirements(setup_cfg: Path = ROOT / "setup.cfg") -> list[str]:
    """setup.cfg's install_requires, torch left out: the device brings its own CUDA build."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    lines = [line.strip() for line in parser["options"]["install_requires"].splitlines() if line.strip()]
    return [line for line in lines if normalize(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]) != "torch"]


def split_wheels(wheels: list[Path], image: dict[str, str | None]) -> tuple[list[Path], list[Path]]:
    """(what the device lacks and must be carried, what its image already holds)."""
    carried = [w for w in wheels if wheel_project(w.name) not in image]
    provided = [w for w in wheels if wheel_project(w.name) in image]
    return carried, provided


def fits_device(filename: str) -> bool:
    """Whether a wheel installs on CPython 3.12, Linux x86_64 (by its file name's tags)."""
    python, abi, platforms = filename[: -len(".whl")].split("-")[-3:]
    pythons = python.split(".")
    python_ok = any(tag in ("py3", "cp312", "py312") for tag in pythons) or (abi == "abi3" and any(
        tag.startswith("cp3") and int(tag[3:]) <= 12 for tag in pythons))
    return python_ok and all(tag == "any" or (tag.startswith("manylinux") and tag.endswith("x86_64"))
                             for tag in platforms.split("."))


def check_carried(dest: Path, limit_mib: float) -> str:
    """What .whl/ must be: the packages the image lacks, none it has, all for the device, small enough."""
    wheels = sorted(dest.glob("*.whl"))
    names = [wheel_project(w.name) for w in wheels]
    problems = []
    lacking = {normalize(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requirements()} - set(image_packages())
    if lacking - set(names):
        problems.append(f"lacks {sorted(lacking - set(names))}")
    if set(names) & set(image_packages()):
        problems.append(f"carries what the image has: {sorted(set(names) & set(image_packages()))}")
    if len(set(names)) != len(names):
        problems.append("holds two versions of a package")
    problems += [f"{w.name} does not install on CPython 3.12 x86_64" for w in wheels if not fits_device(w.name)]
    total = sum(w.stat().st_size for w in wheels) / 2**20
    if total > limit_mib:
        problems.append(f"{total:.1f} MiB is over {limit_mib} MiB")
    if problems:
        raise SystemExit(f"{dest}: " + "; ".join(problems))
    return f"{dest}: {len(wheels)} wheels, {total:.1f} MiB, for CPython 3.12 manylinux x86_64"


def split_like_device(local: Path, device: Path, carried: Path, image: Path) -> None:
    """Link the --local wheels into `carried` (the projects `device` carries) and `image` (the rest:
    what the device image holds), so a rehearsal installs each half the way the device has it."""
    carried_projects = {wheel_project(w.name) for w in device.glob("*.whl")}
    for folder in (carried, image):
        folder.mkdir(parents=True, exist_ok=True)
    for wheel in local.glob("*.whl"):
        target = carried if wheel_project(wheel.name) in carried_projects else image
        (target / wheel.name).symlink_to(wheel.resolve())


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"], check=True)


def build(dest: Path, python_version: str, local: bool, limit_mib: float) -> list[Path]:
    image = image_packages()
    reqs = requirements()
    with tempfile.TemporaryDirectory(prefix="decoder-nas-wheels-") as scratch:
        pure, resolved = Path(scratch, "pure"), Path(scratch, "resolved")
        _pip("wheel", "--no-deps", "-w", str(pure), *SDIST_ONLY)
        target: list[str] = []
        if local:
            import torch  # this environment's torch (the CPU wheel here) goes into the rehearsal venv

            reqs.append(f"torch=={torch.__version__}")
        else:
            pins = Path(scratch, "image-pins.txt")
            pins.write_text("".join(f"{name}=={version}\n" for name, version in image.items() if version))
            target = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
                      *(f"--platform={platform}" for platform in PLATFORMS), "-c", str(pins)]
        _pip("download", *target, "--find-links", str(pure), "-d", str(resolved), *reqs)
        wheels = sorted(resolved.glob("*.whl"))
        carried = wheels if local else split_wheels(wheels, image)[0]
        if dest.exists():
            shutil.rmtree(dest)  # one version of each: two stop the whole install
        dest.mkdir(parents=True)
        kept = [Path(shutil.copy2(wheel, dest)) for wheel in carried]
    total = sum(w.stat().st_size for w in kept) / 2**20
    for wheel in kept:
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{total:7.2f} MiB  in {len(kept)} wheels -> {dest}")
    if not local:
        print(check_carried(dest, limit_mib))
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    parser.add_argument("--python-version", default="3.12", help="the device's Python (default: %(default)s)")
    parser.add_argument("--local", action="store_true", help="for this interpreter, every wheel, torch too")
    parser.add_argument("--limit-mib", type=float, default=60.0,
                        help="most the wheels may weigh; the tool carries 64 MiB with the repository")
    parser.add_argument("--check", type=Path, metavar="DIR", help="check DIR (built for the device) and stop")
    parser.add_argument("--split", type=Path, nargs=4, metavar=("LOCAL", "DEVICE", "CARRIED", "IMAGE"),
                        help=argparse.SUPPRESS)  # gpu_check.sh --rehearse: see split_like_device
    args = parser.parse_args()
    if args.split:
        split_like_device(*args.split)
        return
    if args.check:
        print(check_carried(args.check, args.limit_mib))
        return
    build(args.dest, args.python_version, args.local, args.limit_mib)


if __name__ == "__main__":
    main()
