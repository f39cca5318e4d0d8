"""A finished trial as a view shows it: the one definition of its outcome, architecture and measures,
and of the words that count trials by outcome.

The live view draws it, and a `search --jobs` job sends it to its parent as a JSON event
(studies/job.py), so both say a trial the same way; every summary counts with `counts_text`, so the
jobs' line, the study's and the front's title tell one story.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from ..measures import OBJECTIVES

# A trial's outcome -> how every line and count says it, in the order counts are listed.
OUTCOMES = {"complete": "complete", "reused": "reused a twin's result", "pruned": "stopped early",
            "infeasible": "infeasible", "fail": "failed", "running": "running", "waiting": "waiting"}
TRAINED_OUTCOMES = ("complete", "pruned", "fail")  # the ones that cost training, as --trials counts them


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str  # an OUTCOMES key: Optuna's state, with why it cost no training
    architecture: str  # the summary, marked when it is a gap trial
    measures: dict[str, float] = field(default_factory=dict)  # the objectives it recorded (a stopped one has fewer)
    reason: str = ""  # why it failed or was pruned
    trained: bool = True  # it cost training: infeasible samples and reused repeats do not

    @classmethod
    def of(cls, trial: FrozenTrial, objectives: Sequence[str]) -> TrialRecord:
        attrs = trial.user_attrs
        return cls(trial.number, outcome(trial), _architecture(attrs),
                   {name: attrs[name] for name in objectives if attrs.get(name) is not None},
                   attrs.get("fail_reason") or attrs.get("pruned_reason") or "", trained(trial))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(**data)

    def line(self) -> str:
        """One line: `trial N OUTCOME ARCHITECTURE name=value ... REASON`."""
        values = " ".join(f"{name}={OBJECTIVES[name].format(value)}" for name, value in self.measures.items())
        return f"trial {self.number} {OUTCOMES[self.state]} {self.architecture} {values} {self.reason}".rstrip()


def trained(trial: FrozenTrial) -> bool:
    """Whether the trial cost training: infeasible samples and reused repeats do not count as run."""
    return not trial.user_attrs.get("infeasible") and "reused_from" not in trial.user_attrs


def _architecture(attrs: Mapping[str, Any]) -> str:
    summary = attrs.get("summary", "")
    return f"{summary} (gap trial)" if "gap_between" in attrs else summary


def outcome(trial: FrozenTrial) -> str:
    """The trial's OUTCOMES key. A repeat took its twin's result untrained, whether that completed or
    was stopped early (then it is stored stopped early too, "as trial N: ...")."""
    if "reused_from" in trial.user_attrs and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return "reused"
    if trial.state == TrialState.COMPLETE:
        return "complete"
    if trial.user_attrs.get("infeasible"):
        return "infeasible"
    return trial.state.name.lower()


def counts_text(counts: Mapping[str, int]) -> str:
    """`18 complete, 3 reused a twin's result, 6 stopped early`: outcome counts in OUTCOMES' order, the
    zeros left out ('0 complete' for none). Every summary of trials says its counts with it."""
    return ", ".join(f"{counts[key]} {word}" for key, word in OUTCOMES.items() if counts.get(key)) or "0 complete"


def study_counts(trials: Iterable[FrozenTrial]) -> str:
    """`27 trials: 18 complete, 3 reused a twin's result, 6 stopped early`."""
    counts = Counter(outcome(trial) for trial in trials)
    total = sum(counts.values())
    return f"{total} trial{'s' if total != 1 else ''}: {counts_text(counts)}" if total else "no trials yet"
