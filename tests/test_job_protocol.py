"""`python -m studies.job` reads one request: anything else on its stdin is one line naming what the
protocol expects, and a request whose settings differ from the study's is refused as `search` refuses it."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from studies import Search
from studies.errors import StudyError
from studies.job import read_request, run
from study_helpers import isolated_python_api, make_settings, make_tiny  # noqa: F401 (an autouse fixture)

REPO = Path(__file__).resolve().parents[1]
EXPECTED = "decoder-nas job: error: stdin: expected the job's request, one JSON object on one line"


SLOW = pytest.mark.slow  # a process each: two cases in the fast lane, read_request's own tests below for the rest


@pytest.mark.parametrize("line, got", [
    ("\n", "got an empty line"),
    pytest.param("  \t\n", "got an empty line", marks=SLOW),
    pytest.param("not json\n", "got text that is not JSON", marks=SLOW),
    ("[1, 2]\n", "got a JSON list"),
    pytest.param("null\n", "got a JSON null", marks=SLOW),
    pytest.param('"study"\n', "got a JSON string", marks=SLOW),
    pytest.param('{"study": "x"}\n', "got an object without storage, settings", marks=SLOW),
])
def test_a_bad_request_is_one_line_naming_the_protocol(line: str, got: str) -> None:
    done = subprocess.run([sys.executable, "-m", "studies.job"], input=line, capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(EXPECTED) and got in done.stderr and "trials, device" in done.stderr
    assert done.stdout == ""


def request(**changes: object) -> dict[str, object]:
    fields = {"study": "s", "storage": "s.journal", "settings": {}, "keep_checkpoints": "none", "artifacts": None,
              "max_complete": None, "trials": 1, "device": "cpu"}
    return {**fields, **changes}


@pytest.mark.parametrize("line, got", [("", "got an empty line"), ("{", "got text that is not JSON"),
                                       ("null", "got a JSON null"), ("3", "got a JSON number"),
                                       ('{"study": "x"}', "got an object without storage, settings")])
def test_read_request_names_what_it_got(line: str, got: str) -> None:
    with pytest.raises(StudyError, match=f"expected the job's request, .*, {got}"):
        read_request(line + "\n")


@pytest.mark.parametrize("changes, words", [
    ({"trials": "1"}, "trials='1': expected int, not str"),
    ({"settings": []}, "settings=[]: expected dict, not list"),
    ({"max_complete": 2.5}, "max_complete=2.5: expected int or None"),
    ({"extra": 1}, "with unknown keys extra"),
])
def test_a_request_of_the_wrong_shape_names_the_field(changes: dict[str, object], words: str) -> None:
    import json

    with pytest.raises(StudyError, match=words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        read_request(json.dumps(request(**changes)) + "\n")


def test_a_job_asking_for_other_settings_than_the_study_s_is_refused(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path)
    search = Search.create("s", str(tiny.storage), make_settings(data=str(tiny.corpus)), presets=False)
    other = search.settings.to_dict()
    other["recipe"]["steps"] = 5
    events = io.StringIO()
    with pytest.raises(StudyError, match="other settings: recipe.steps: study has 12, this run asks 5"):
        run(request(storage=str(tiny.storage), settings=other), events)
    assert events.getvalue() == "" and search.study.get_trials() == []  # nothing trained into it
    with pytest.raises(StudyError, match="settings: not a study's settings"):
        run(request(storage=str(tiny.storage), settings={"objectives": ["val_loss"]}), events)
