"""Multi-objective studies over the decoder design space, and the `decoder-nas` command line.

The command line is a thin layer over these calls: `open_study` + `run_worker` (search, worker),
`promote`, `front_trials` / `pick` / `hypervolume` (pareto, export), `reproduce`, `calibrate`.
"""

import os

# OpenMP threads that spin while they wait turn a busy machine (several workers, other jobs) into a
# crawl: ~20x slower training measured on 2 shared cores. Passive waiting costs ~3% when idle.
# It must be set before torch is first imported (here, for the CLI); an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import StudyError  # noqa: E402
from .evidence import Calibration, calibrate, reproduce, sample_architectures  # noqa: E402
from .front import front_trials, hypervolume, knee, normaliser_for, pick, study_at_budget  # noqa: E402
from .search import WorkerSummary, open_study, promote, run_worker  # noqa: E402
from .settings import DEFAULT_OBJECTIVES, OBJECTIVES, StudySettings  # noqa: E402
from .space import SearchSpace, load_space  # noqa: E402
from .storage import open_storage  # noqa: E402

__all__ = [
    "Calibration",
    "DEFAULT_OBJECTIVES",
    "OBJECTIVES",
    "SearchSpace",
    "StudyError",
    "StudySettings",
    "WorkerSummary",
    "calibrate",
    "front_trials",
    "hypervolume",
    "knee",
    "load_space",
    "normaliser_for",
    "open_storage",
    "open_study",
    "pick",
    "promote",
    "reproduce",
    "run_worker",
    "sample_architectures",
    "study_at_budget",
]
