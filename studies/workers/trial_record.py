"""A finished trial as a view shows it: the one definition of its state word, architecture and measures.

The live view draws it, and a `search --jobs` job sends it to its parent as a JSON event
(studies/job.py), so both say a trial the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from optuna.trial import FrozenTrial, TrialState

from ..measures import OBJECTIVES


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str  # complete, reused, infeasible, pruned, fail (Optuna's state, with why it cost no training)
    architecture: str  # the summary, marked when it is a gap trial
    measures: dict[str, float] = field(default_factory=dict)  # the objectives it recorded (a stopped one has fewer)
    reason: str = ""  # why it failed or was pruned
    trained: bool = True  # it cost training: infeasible samples and reused repeats do not

    @classmethod
    def of(cls, trial: FrozenTrial, objectives: Sequence[str]) -> TrialRecord:
        attrs = trial.user_attrs
        return cls(trial.number, _state(trial), _architecture(attrs),
                   {name: attrs[name] for name in objectives if attrs.get(name) is not None},
                   attrs.get("fail_reason") or attrs.get("pruned_reason") or "", trained(trial))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(**data)

    def line(self) -> str:
        """One line: `trial N STATE ARCHITECTURE name=value ... REASON`."""
        values = " ".join(f"{name}={OBJECTIVES[name].format(value)}" for name, value in self.measures.items())
        return f"trial {self.number} {self.state} {self.architecture} {values} {self.reason}".rstrip()


def trained(trial: FrozenTrial) -> bool:
    """Whether the trial cost training: infeasible samples and reused repeats do not count as run."""
    return not trial.user_attrs.get("infeasible") and "reused_from" not in trial.user_attrs


def _architecture(attrs: Mapping[str, Any]) -> str:
    summary = attrs.get("summary", "")
    return f"{summary} (gap trial)" if "gap_between" in attrs else summary


def _state(trial: FrozenTrial) -> str:
    if trial.state == TrialState.COMPLETE:
        return "reused" if "reused_from" in trial.user_attrs else "complete"
    if trial.user_attrs.get("infeasible"):
        return "infeasible"
    return trial.state.name.lower()
