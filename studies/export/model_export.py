"""Take a trained model away: a Hugging Face folder (`--hf DIR`) and an ONNX graph (`--onnx FILE`),
from a run folder (`train --out`) or a study trial's kept weights.

An export carries trained weights or nothing: untrained weights are refused with how to get trained
ones, unless asked for (`untrained=True`, ONNX only, for latency work). Every check runs before the
first file is written, and the outputs appear together, whole, or not at all (outputs.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from search_space import Decoder, DecoderConfig
from trainer.checkpoint import Checkpoint, load_checkpoint

from ..errors import ArgumentError, StudyError
from ..storage.artifacts import download_weights
from .hf_folder import check_target, require_transformers, write_hf_folder
from .outputs import Output, Staging, check_places

ONNX_TOLERANCE = 1e-4  # onnxruntime's logits against PyTorch's, fp32
HOW_TO_TRAIN = ("train it (`decoder-nas train best.yaml --out runs/best`, then `decoder-nas export runs/best "
                "--hf DIR --onnx FILE`) or keep a study's weights (`search --keep-checkpoints front`)")


@dataclass(frozen=True)
class Takeaway:
    """What an export wrote: the HF folder and its model class, the ONNX file and how far its
    onnxruntime logits are from PyTorch's."""

    hf: Path | None = None
    hf_class: str | None = None
    onnx: Path | None = None
    onnx_difference: float | None = None
    trained: bool = True


def model_outputs(hf: str | Path | None, onnx: str | Path | None) -> list[Output]:
    """The HF folder and the ONNX file, as check_places checks them."""
    return ([Output("hf", Path(hf), folder=True)] if hf is not None else []) + (
        [Output("onnx", Path(onnx))] if onnx is not None else [])


def check_outputs(hf: str | Path | None, onnx: str | Path | None, trained: bool, untrained: bool,
                  source: str) -> None:
    """Everything that can be refused before a file is written: untrained weights, a DIR in use, a
    missing extra (check_places has checked the names). `source` names where the weights would come
    from, for the message."""
    if hf is not None and not trained:
        raise ArgumentError("hf", hf, f"{source} has no trained weights; {HOW_TO_TRAIN}")
    if onnx is not None and not trained and not untrained:
        raise ArgumentError("onnx", onnx, f"{source} has no trained weights; {HOW_TO_TRAIN}, or pass --untrained "
                         "(random weights, for latency work)")
    if hf is not None:
        require_transformers()
        check_target(Path(hf))
    if onnx is not None:
        from objectives.onnx import require_onnx

        require_onnx()
        if Path(onnx).is_dir():
            raise ArgumentError("onnx", onnx, "is a folder; give a .onnx file name")
        if Path(onnx).exists() and not Path(onnx).is_file():  # the file is renamed into place: never over a device
            raise ArgumentError("onnx", onnx, "is not a regular file (a device or a pipe); give a .onnx file name")


def export_run(folder: str | Path, *, hf: str | Path | None = None, onnx: str | Path | None = None,
               untrained: bool = False) -> Takeaway:
    """Export the model of a run folder written by `train --out` (the Python twin of
    `decoder-nas export RUN --hf DIR --onnx FILE`)."""
    if hf is None and onnx is None:
        raise StudyError(f"{folder}: a run folder exports as --hf DIR, --onnx FILE or both; give one")
    check_places(model_outputs(hf, onnx), inputs=[Path(folder)])
    checkpoint = load_checkpoint(folder)
    trained = bool(checkpoint.record.get("step"))
    check_outputs(hf, onnx, trained, untrained, f"run folder {folder}")
    with Staging() as staging:
        takeaway = write_outputs(checkpoint.model, checkpoint, hf, onnx, {"run folder": str(folder)}, staging)
        staging.commit()
    return takeaway


def export_trial(trial: FrozenTrial, config: DecoderConfig, store: Any, weights: Path | None,
                 hf: str | Path | None, onnx: str | Path | None, seed: int, staging: Staging) -> Takeaway:
    """Stage a study trial's model: its kept weights (`weights`, already downloaded, or fetched from
    `store` into a scratch folder), or with no store an untrained ONNX graph (checked by check_outputs)."""
    origin = {"study": config.provenance.get("study"), "trial": trial.number}
    if store is None:
        from trainer.run import initialised_model

        return write_outputs(initialised_model(config, seed), None, None, onnx, origin, staging)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = load_checkpoint(weights or download_weights(trial, store, Path(scratch)))
        return write_outputs(checkpoint.model, checkpoint, hf, onnx, origin, staging)


def write_outputs(model: Decoder, checkpoint: Checkpoint | None, hf: str | Path | None, onnx: str | Path | None,
                  origin: dict[str, Any], staging: Staging) -> Takeaway:
    """Stage what was asked for (checked by check_outputs first); `checkpoint` is None only for an
    untrained ONNX export. The caller commits."""
    hf_class = difference = None
    if hf is not None and checkpoint is not None:
        with staging.writing(Path(hf), "hf") as folder:
            hf_class = write_hf_folder(model, checkpoint.tokenizer, folder, {**_run_facts(checkpoint), **origin})
    if onnx is not None:
        with staging.writing(Path(onnx), "onnx") as staged:
            difference = write_onnx(model, Path(onnx), staged)
    return Takeaway(Path(hf) if hf is not None else None, hf_class, Path(onnx) if onnx is not None else None,
                    difference, trained=checkpoint is not None)


def write_onnx(model: Decoder, path: Path, staged: Path) -> float:
    """Export to `staged` with dynamic batch and sequence axes and check onnxruntime against PyTorch at
    batch 1 and 4; returns the largest logit difference. `path` is where it goes, for messages."""
    from objectives.onnx import export_onnx, onnx_max_difference

    export_onnx(model, staged)
    difference = onnx_max_difference(model, staged)
    if not difference <= ONNX_TOLERANCE:
        raise ArgumentError("onnx", path, f"onnxruntime's logits differ from PyTorch's by {difference:.2g} "
                         f"(more than {ONNX_TOLERANCE:g}); nothing written")
    return difference


def _run_facts(checkpoint: Checkpoint) -> dict[str, Any]:
    """The model card's training facts from run.json."""
    record, metrics = checkpoint.record, checkpoint.record.get("metrics", {})
    provenance = checkpoint.config.provenance
    val_loss = metrics.get("val_loss")
    return {"study": provenance.get("study"), "trial": provenance.get("trial"),
            "val loss": f"{val_loss:.4f}" if isinstance(val_loss, (int, float)) else None,
            "data": record.get("data_spec"), "tokenizer": record.get("tokenizer"),
            "training steps": record.get("step")}
