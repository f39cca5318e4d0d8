"""Trial weights as Optuna artifacts: uploaded by the worker that trained them, found by `export`
and the dashboard on any machine that reaches the store.

A store is a folder (by default beside a journal or SQLite file: `<storage>.artifacts`; a shared
folder for several machines) or `s3://BUCKET` (Optuna's Boto3ArtifactStore, needs boto3). A study
remembers its store; `--artifacts` points a worker on another machine at its own path to it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.trial import FrozenTrial

from search_space import architecture_hash, load_config

from ..errors import ArgumentError, StudyError
from .backends import local_file

ARTIFACTS_KEY = "artifact_store"  # study attribute: where its trials' weights are kept
WEIGHTS_KEY = "weights"  # trial attribute: {"files": {name: artifact id}, "arch_hash": ..., "sha256": {name: hex}}
DIGESTS_KEY = "sha256"  # in WEIGHTS_KEY: each file's SHA-256 at upload (absent in studies made before it)
CONFIG_FILE = "config.yaml"  # written with every checkpoint (trainer.checkpoint)


def default_artifacts(storage: str) -> str | None:
    """`<file>.artifacts` beside a journal or SQLite file; None for a database server."""
    local = local_file(storage)
    return str(local.resolve()) + ".artifacts" if local else None


def study_artifacts(study: optuna.Study, storage: str, given: str | None = None) -> str | None:
    """The store this process uses for the study: `given` (recorded if the study has none yet), the
    study's own, or the default beside its storage."""
    recorded = study.user_attrs.get(ARTIFACTS_KEY)
    if given is not None and recorded is None:
        study.set_user_attr(ARTIFACTS_KEY, given)
    return given or recorded or default_artifacts(storage)


def open_store(spec: str) -> Any:
    """An Optuna artifact store for a folder path or s3://BUCKET."""
    if spec.startswith("s3://"):
        try:
            return Boto3ArtifactStore(spec.removeprefix("s3://").strip("/"))
        except ImportError as exc:  # boto3 is optional
            raise ArgumentError("artifacts", spec, "S3 stores need boto3 (pip install boto3)") from exc
    if "://" in spec:
        raise ArgumentError("artifacts", spec, "give a folder path or s3://BUCKET")
    folder = Path(spec)
    if folder.exists() and not folder.is_dir():
        raise ArgumentError("artifacts", spec, "is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # under a file, on a read-only disk, no permission
        raise ArgumentError("artifacts", spec, f"cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):  # refused before any training, not when its weights arrive
        raise ArgumentError("artifacts", spec, "the folder is not writable")
    return FileSystemArtifactStore(str(folder))


def upload_weights(trial: optuna.Trial, store: Any, folder: Path, arch_hash: str) -> None:
    """Upload every file of a checkpoint folder (its tokenizer/ too) and record their ids by relative
    path, each file's SHA-256, and the architecture they fit."""
    paths = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
    files = {name: upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
             for name, path in paths.items()}
    trial.set_user_attr(WEIGHTS_KEY, {"files": files, "arch_hash": arch_hash,
                                      DIGESTS_KEY: {name: file_digest(path) for name, path in paths.items()}})


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in chunks (weights can be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_weights(trial: FrozenTrial, store: Any, folder: Path) -> Path:
    """The trial's checkpoint folder, rebuilt from the store; refused unless its config is the trial's
    architecture and every file is the one uploaded (its SHA-256, recorded since weights kept their
    digests): a file swapped in the store, or a store mixed with another study's, would otherwise give
    wrong weights silently."""
    record = trial.user_attrs[WEIGHTS_KEY]
    folder.mkdir(parents=True, exist_ok=True)
    for name, artifact_id in record["files"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(folder / name))
        except Exception as exc:  # the store's own error types differ (a missing file, a missing S3 key)
            raise StudyError(f"trial {trial.number}'s weights ({name}) are not in the artifact store: "
                             f"{type(exc).__name__}: {exc} (removed by --keep-checkpoints front, or another "
                             "store: give --artifacts)") from None
    try:
        stored = architecture_hash(load_config(folder / CONFIG_FILE))
    except ValueError:  # not a config at all (ConfigError, or bytes that are not text)
        stored = None
    if stored is not None and (stored != trial.user_attrs.get("arch_hash") or stored != record["arch_hash"]):
        raise StudyError(f"trial {trial.number}'s weights in the artifact store are for architecture {stored}, "
                         f"not the trial's {trial.user_attrs.get('arch_hash')}")
    for name, recorded in record.get(DIGESTS_KEY, {}).items():
        found = file_digest(folder / name)
        if found != recorded:
            raise StudyError(f"trial {trial.number}'s {name} in the artifact store is not the file its worker "
                             f"uploaded (SHA-256 {found[:12]}, recorded {recorded[:12]}): replaced or damaged "
                             "since; refusing to export it")
    if stored is None:
        raise StudyError(f"trial {trial.number}'s {CONFIG_FILE} in the artifact store is not a readable config")
    return folder


def remove_weights(trials: list[FrozenTrial], store: Any) -> int:
    """Delete these trials' weights from the store; returns how many trials had some."""
    removed = 0
    for trial in trials:
        files = trial.user_attrs.get(WEIGHTS_KEY, {}).get("files", {})
        for artifact_id in files.values():
            try:
                store.remove(artifact_id)
            except Exception:  # already gone (another worker kept only its front too)
                continue
        removed += bool(files)
    return removed
