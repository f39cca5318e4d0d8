"""A study trains on one kind of device: its figures from a CPU and from a GPU do not compare.

CPU latency is the measuring thread's CPU time, CUDA latency is timed with events; and the CPU and
CUDA random generators draw different training batches, so even the losses differ. A study records
the device type its first worker used and refuses a worker of another type (cuda:0 and cuda:1 are
one type: same generator, same timing).
"""

from __future__ import annotations

import optuna
import torch

from ..errors import StudyError

DEVICE_TYPE_KEY = "device_type"


def device_type(device: str | None) -> str | None:
    """"cuda" for "cuda:1", "cpu" for "cpu"; None for what names no device (a trial predating the record)."""
    if not device:
        return None
    try:
        return torch.device(device).type
    except RuntimeError:
        return None


def claim_device_type(study: optuna.Study, device: torch.device) -> None:
    """Record `device`'s type as the study's, or raise StudyError if the study was run on another."""
    recorded = study.user_attrs.get(DEVICE_TYPE_KEY)
    if recorded is None:  # a study from before the record: its trials say where they ran
        recorded = next((kind for trial in study.get_trials(deepcopy=False)
                         if (kind := device_type(trial.user_attrs.get("device")))), None)
        study.set_user_attr(DEVICE_TYPE_KEY, recorded or device.type)
    if recorded is not None and recorded != device.type:
        raise StudyError(
            f"study {study.study_name!r} ran on {recorded}, and --device {device} is {device.type}: its latency "
            f"would mix {recorded} and {device.type} timings (and the two draw different batches); run it on "
            f"{recorded}, or start a new --study for {device.type}")
