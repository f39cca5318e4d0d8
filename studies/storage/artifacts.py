"""Trial weights as Optuna artifacts: uploaded by the worker that trained them, found by `export`
and the dashboard on any machine that reaches the store.

A store is a folder (by default beside a journal or SQLite file: `<storage>.artifacts`; a shared
folder for several machines) or `s3://BUCKET` (Optuna's Boto3ArtifactStore, needs boto3). A study
remembers its store, a folder by its absolute path; `--artifacts` points a worker on another machine
at its own path to it.

What the storage says about kept weights (file names, artifact ids) is data that anyone who can
write the storage can change: a name becomes a file of the checkpoint folder only if it is a plain
checkpoint file name, an id is used only if it is an artifact id as Optuna writes them. A store that
cannot be written is refused before training, and one that stops being writable stops the worker
(`ArtifactStoreError`) with its partial upload removed.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
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
# One part of a kept file's name (model.safetensors, tokenizer/tokenizer.json), and how deep they go.
FILE_NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
MAX_NAME_PARTS = 2


class ArtifactStoreError(StudyError):
    """The artifact store cannot take a trial's weights: the worker stops (it is not the trial's fault)."""


def default_artifacts(storage: str) -> str | None:
    """`<file>.artifacts` beside a journal or SQLite file; None for a database server."""
    local = local_file(storage)
    return str(local.resolve()) + ".artifacts" if local else None


def study_artifacts(study: optuna.Study, storage: str, given: str | None = None, record: bool = True) -> str | None:
    """The store this process uses for the study: `given` (recorded, as an absolute path, if the study
    has none yet and `record`), the study's own, or the default beside its storage."""
    recorded = study.user_attrs.get(ARTIFACTS_KEY)
    if given is not None and recorded is None and record:
        study.set_user_attr(ARTIFACTS_KEY, _absolute(given))  # as typed, it would mean another folder elsewhere
    return given or recorded or default_artifacts(storage)


def _absolute(spec: str) -> str:
    return spec if "://" in spec else str(Path(spec).resolve())


def open_store(spec: str, create: bool = True) -> Any:
    """An Optuna artifact store for a folder path or s3://BUCKET. With `create` (a worker that keeps
    weights) the folder is made if needed and must take a file; without (export, the dashboard,
    deleting a study) nothing is made."""
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
    if create:
        _check_writable(folder, spec)
    return FileSystemArtifactStore(str(folder))


def _check_writable(folder: Path, spec: str) -> None:
    """Refused before any training, not when its weights arrive: a folder that cannot be made, is
    read-only or on a full disk (a file is written and removed)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # under a file, on a read-only disk, no permission
        raise ArgumentError("artifacts", spec, f"cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArgumentError("artifacts", spec, "the folder is not writable")
    probe = folder / f".write-check-{uuid.uuid4().hex}"
    try:
        with probe.open("wb") as file:
            file.write(bytes(1 << 12))
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:  # a full disk, a quota
        raise ArgumentError("artifacts", spec, f"cannot write ({exc.strerror or exc})") from None
    finally:
        probe.unlink(missing_ok=True)


def upload_weights(trial: optuna.Trial, store: Any, folder: Path, arch_hash: str) -> None:
    """Upload every file of a checkpoint folder (its tokenizer/ too) and record their ids by relative
    path, each file's SHA-256, and the architecture they fit. A store that fails midway (full, deleted)
    is an ArtifactStoreError, the files already uploaded removed."""
    paths = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()}
    written = _Recording(store)
    try:
        files = {name: upload_artifact(artifact_store=written, file_path=str(path), study_or_trial=trial)
                 for name, path in paths.items()}
    except Exception as exc:
        failure = written.failure
        if failure is None:  # not the store (the storage, recording what was uploaded)
            raise
        for artifact_id in written.ids:
            try:
                store.remove(artifact_id)
            except Exception:  # never written, or the store is gone altogether
                continue
        reason = failure.strerror if isinstance(failure, OSError) and failure.strerror else \
            f"{type(failure).__name__}: {failure}"  # botocore's errors from S3
        raise ArtifactStoreError(f"the artifact store stopped taking weights ({reason}) while trial {trial.number}'s "
                                 "were uploaded; its partial upload is removed. Free space or give another "
                                 "--artifacts, then run again") from exc
    trial.set_user_attr(WEIGHTS_KEY, {"files": files, "arch_hash": arch_hash,
                                      DIGESTS_KEY: {name: file_digest(path) for name, path in paths.items()}})


class _Recording:
    """An artifact store that notes the id of every artifact written through it, and a write that failed."""

    def __init__(self, store: Any) -> None:
        self.store, self.ids = store, []
        self.failure: Exception | None = None

    def write(self, artifact_id: str, content: Any) -> None:
        self.ids.append(artifact_id)
        try:
            self.store.write(artifact_id, content)
        except Exception as exc:
            self.failure = exc
            raise


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
    files, digests = kept_files(trial)
    folder.mkdir(parents=True, exist_ok=True)
    for name, artifact_id in files.items():
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
    if stored is not None and (stored != trial.user_attrs.get("arch_hash")
                               or stored != trial.user_attrs[WEIGHTS_KEY].get("arch_hash")):
        raise StudyError(f"trial {trial.number}'s weights in the artifact store are for architecture {stored}, "
                         f"not the trial's {trial.user_attrs.get('arch_hash')}")
    for name, recorded in digests.items():
        found = file_digest(folder / name)
        if found != recorded:
            raise StudyError(f"trial {trial.number}'s {name} in the artifact store is not the file its worker "
                             f"uploaded (SHA-256 {found[:12]}, recorded {recorded[:12]}): replaced or damaged "
                             "since; refusing to export it")
    if stored is None:
        raise StudyError(f"trial {trial.number}'s {CONFIG_FILE} in the artifact store is not a readable config")
    return folder


def kept_files(trial: FrozenTrial) -> tuple[dict[str, str], dict[str, str]]:
    """The trial's kept files as {name: artifact id} and their recorded {name: SHA-256}, each checked:
    a name is a checkpoint file's (at most one folder deep, no `..`, no absolute path), an id is
    Optuna's (a UUID), a digest names a kept file. Anything else is refused before a file is written."""
    record = trial.user_attrs.get(WEIGHTS_KEY)
    files = record.get("files") if isinstance(record, dict) else None
    digests = record.get(DIGESTS_KEY, {}) if isinstance(record, dict) else None
    if not isinstance(files, dict) or not isinstance(digests, dict) or not files:
        raise StudyError(f"trial {trial.number}'s record of its kept weights in the storage is damaged "
                         "(not a list of files); refusing to export it")
    for name, artifact_id in files.items():
        parts = name.split("/")
        if len(parts) > MAX_NAME_PARTS or not all(FILE_NAME_PART.fullmatch(part) for part in parts):
            raise StudyError(f"trial {trial.number}'s kept weights name a file {name[:80]!r} in the storage, which is "
                             "not a checkpoint file name (a name from the storage never becomes a path outside the "
                             "checkpoint); refusing to export it")
        if not _is_artifact_id(artifact_id):
            raise StudyError(f"trial {trial.number}'s kept file {name} has artifact id {str(artifact_id)[:80]!r} "
                             "in the storage, which is not an id Optuna writes; refusing to export it")
    strays = [name for name in digests if name not in files]
    if strays or not all(isinstance(digest, str) for digest in digests.values()):
        raise StudyError(f"trial {trial.number}'s record of its kept weights in the storage is damaged (a digest "
                         f"for {(strays or ['a file'])[0][:80]!r}); refusing to export it")
    return files, digests


def _is_artifact_id(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def remove_weights(trials: list[FrozenTrial], store: Any) -> int:
    """Delete these trials' weights from the store; returns how many trials had some. Only artifact
    ids as Optuna writes them are removed: the storage may say anything."""
    removed = 0
    for trial in trials:
        record = trial.user_attrs.get(WEIGHTS_KEY)
        files = record.get("files") if isinstance(record, dict) else None
        ids = [i for i in files.values() if _is_artifact_id(i)] if isinstance(files, dict) else []
        for artifact_id in ids:
            try:
                store.remove(artifact_id)
            except Exception:  # already gone (another worker kept only its front too)
                continue
        removed += bool(ids)
    return removed
