"""One job of `search --jobs`, the child side of studies/workers/jobs.py: `python -m studies.job`.

It reads its work as one JSON line on stdin (a `jobs.JobSpec` with its share of the trials and its
device), then watches stdin for the end of file that says the parent is gone. It answers on stdout
in JSON lines, one event per finished trial and one at the end; whatever else it prints (a
warning, an error's one line) goes to stderr, which the parent shows prefixed and keeps the end of.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
from types import UnionType
from typing import IO, Any, Callable, Union, get_args, get_origin, get_type_hints

from trainer.threads import configure_process

from .errors import StudyError, exit_code_of, signal_exit_code
from .expect import expect
from .workers.trial_record import TrialRecord


class EventReporter:
    """trials.Reporter that sends each finished trial to the parent as a `trial` event."""

    def __init__(self, events: IO[str], objectives: list[str]) -> None:
        self.events, self.objectives = events, objectives

    def trial_started(self, trial: Any, summary: str, steps: int) -> None:
        pass

    def progress(self, progress: Any) -> None:
        pass

    def trial_finished(self, trial: Any) -> None:
        send(self.events, "trial", record=TrialRecord.of(trial, self.objectives).to_dict())


def send(events: IO[str], event: str, **fields: Any) -> None:
    events.write(json.dumps({"event": event, **fields}) + "\n")
    events.flush()


def run(request: dict[str, Any], events: IO[str]) -> None:
    from .api import Search
    from .settings import StudySettings
    from .storage.backends import load_existing, open_storage
    from .workers.search import check_same_settings

    study = load_existing(request["study"], open_storage(request["storage"], create=False))
    try:
        asked = StudySettings.from_dict(request["settings"])
    except (KeyError, TypeError, AttributeError) as exc:  # the settings' own checks name what they refuse
        raise StudyError(f"settings: not a study's settings ({type(exc).__name__}: {exc})") from None
    settings = check_same_settings(study, asked)  # as `search` refuses a run that asks for other settings
    search = Search(study, settings, request["storage"], artifacts=request["artifacts"])
    summary = search.run(request["trials"], jobs=1, device=request["device"], max_complete=request["max_complete"],
                         keep_checkpoints=request["keep_checkpoints"],
                         reporter=EventReporter(events, list(settings.objectives)))
    send(events, "done", trained=summary.trials_run, exhausted=summary.exhausted)


def read_request(line: str) -> dict[str, Any]:
    """The parent's request, checked: a JSON object holding a JobSpec's fields and the job's share."""
    fields = request_fields()
    expected = (f"stdin: expected the job's request, one JSON object on one line with {', '.join(fields)} "
                "(studies/workers/jobs.py's JobSpec and the job's share)")
    if not line.strip():
        raise StudyError(f"{expected}, got an empty line")
    try:
        request = json.loads(line)
    except ValueError as exc:
        raise StudyError(f"{expected}, got text that is not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise StudyError(f"{expected}, got a JSON {_JSON_NAMES.get(type(request), type(request).__name__)}")
    missing = [name for name in fields if name not in request]
    unknown = sorted(set(request) - set(fields))
    if missing or unknown:
        raise StudyError(f"{expected}, got an object " + (f"without {', '.join(missing)}" if missing else
                                                         f"with unknown keys {', '.join(unknown)}"))
    for name, kinds in fields.items():
        expect(name, request[name], tuple(kind for kind in kinds if kind is not type(None)),
               optional=type(None) in kinds)
    return request


def request_fields() -> dict[str, tuple[type, ...]]:
    """Each field of a request and the types it may hold: a JobSpec's, then the job's share."""
    from .workers.jobs import JobSpec  # loads torch: after configure_process

    hints = {**get_type_hints(JobSpec), "trials": int, "device": str}
    return {name: tuple(get_origin(kind) or kind for kind in (get_args(hint) if get_origin(hint) in (Union, UnionType)
                                                              else (hint,)))
            for name, hint in hints.items()}


_JSON_NAMES = {list: "list", type(None): "null", str: "string", int: "number", float: "number", bool: "boolean"}


def watch_parent() -> None:
    """Stop as on SIGTERM (the trial recorded FAIL) once the parent is gone, however it died: the
    parent never writes to stdin after the request, and the pipe reads end-of-file when it exits."""

    def wait_for_end_of_file() -> None:
        while os.read(0, 1 << 12):
            pass
        quiet = os.open(os.devnull, os.O_WRONLY)  # nobody reads stderr any more: writes must not fail
        os.dup2(quiet, 2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait_for_end_of_file, name="parent-watch", daemon=True).start()


def _events_stream() -> IO[str]:
    """The events keep stdout's pipe; anything printed to stdout after this goes to stderr instead."""
    events = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return events


def main() -> int:
    configure_process()  # before torch loads; the parent's OMP_NUM_THREADS (jobs.job_threads) decides it
    events = _events_stream()
    line = sys.stdin.readline()
    if not line:  # the parent died before it could say what to do
        return signal_exit_code(signal.SIGTERM)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    masks: list[Callable[[str], str]] = []  # once the request names the storage: its passwords in no line printed

    def work() -> None:
        from .storage.backends import display_storage  # first: masking must not need memory once it runs out

        request = read_request(line)
        masks.append(functools.partial(display_storage, request["storage"]))
        watch_parent()
        run(request, events)

    return exit_code_of(work, "decoder-nas job", mask=lambda text: masks[0](text) if masks else text)


if __name__ == "__main__":
    sys.exit(main())
