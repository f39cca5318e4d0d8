"""Issue 15, round 2: names that are not paths, storages side by side, refusals that leave nothing,
secrets, leases, SIGTERM, interrupted presets and promotions, deleted studies, studies from other tools.

Subprocess tests (a killed or terminated worker) are marked slow; the rest run tiny studies in-process.
The PostgreSQL test needs DECODER_NAS_TEST_POSTGRES, as tests/test_reliability.py does.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import studies.trials
from study_helpers import (  # noqa: F401 - autouse fixture
    SINGLE_SPACE,
    TINY_SPACE,
    Tiny,
    assert_one_line_error,
    cli,
    isolated_python_api,
    make_tiny,
)

REPO = Path(__file__).resolve().parents[1]
SECRET = "SuperSecret123"


def load(storage: str | Path, name: str) -> optuna.Study:
    from studies.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(storage), create=False))


def study_names(storage: str | Path) -> list[str]:
    from studies.storage import open_storage

    return optuna.get_all_study_names(open_storage(str(storage), create=False))


def states(storage: str | Path, name: str) -> list[TrialState]:
    return [t.state for t in load(storage, name).get_trials(deepcopy=False)]


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*")}


def interrupt_once(monkeypatch: pytest.MonkeyPatch, which, exception: type[BaseException] = KeyboardInterrupt) -> list:
    """Make the first training of a trial for which which(user_attrs) holds raise `exception`; the
    trials it stopped are listed in the returned list (their user attributes)."""
    original = studies.trials.run_training
    stopped: list[dict] = []

    def run_training(*args, **kwargs):
        trial = args[5].trial  # the _RungPruner holds the trial being trained
        if not stopped and which(trial.user_attrs):
            stopped.append(dict(trial.user_attrs))
            raise exception()
        return original(*args, **kwargs)

    monkeypatch.setattr(studies.trials, "run_training", run_training)
    return stopped


# 1. A study name never becomes a path.

@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_a_study_name_never_becomes_a_path(tmp_path: Path, kind: str) -> None:
    box = tmp_path / "box"  # the corpus cache is in tmp_path
    t = make_tiny(box / "deep" / "er" / "work")
    victim = box / "victim"
    (victim / "trial-99").mkdir(parents=True)
    (victim / "trial-99" / "model.safetensors").write_bytes(b"someone's weights")
    name = str(victim) if kind == "absolute" else "../../escaped"
    before = files_under(box)

    done = cli(*t.argv("search", "--trials", "2", "--no-presets", "--keep-checkpoints", "front", study=name))
    assert done.code == 0, done.err
    assert load(t.storage, name).get_trials(deepcopy=False)  # the name is the study's name, nothing more
    store = Path(str(t.storage) + ".artifacts")
    outside = {path for path in files_under(box) - before if path.parent != t.root and store not in path.parents}
    assert outside == set(), outside  # only the journal (and its lock) and the artifact store are new
    assert list(store.iterdir())  # the front's weights are there
    assert (victim / "trial-99" / "model.safetensors").read_bytes() == b"someone's weights"
    assert not (box / "escaped").exists() and not (box / "deep" / "escaped").exists()


def test_a_300_character_study_name_is_refused_before_any_training(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path)
    trained = interrupt_once(monkeypatch, lambda attrs: True, RuntimeError)
    done = cli(*t.argv("search", "--trials", "1", study="x" * 300))
    assert_one_line_error(done, "search", "200")
    assert trained == []
    assert not t.storage.exists() or study_names(t.storage) == []


# 2. Two storages in one folder keep separate weights.

def test_two_storages_in_one_folder_keep_their_own_weights(tmp_path: Path) -> None:
    t = make_tiny(tmp_path, SINGLE_SPACE)  # one architecture: only the weights tell the trials apart
    weights = {}
    for storage, seed in (("a.journal", "0"), ("b.journal", "1")):
        argv = t.argv("search", "--trials", "1", "--no-presets", "--keep-checkpoints", "all", "--seed", seed)
        argv[argv.index("--storage") + 1] = str(tmp_path / storage)
        argv[argv.index("--study"):argv.index("--study") + 2] = []  # the default study name in both
        done = cli(*argv)
        assert done.code == 0, done.err
        exported = tmp_path / f"{storage}-best.yaml"
        done = cli("export", "--storage", str(tmp_path / storage), "--trial", "0", "-o", str(exported))
        assert done.code == 0, done.err
        checkpoint = tmp_path / f"{storage}-best-checkpoint"
        weights[storage] = (checkpoint / "model.safetensors").read_bytes()
        provenance = yaml.safe_load(exported.read_text())["provenance"]
        [trial] = load(tmp_path / storage, provenance["study"]).get_trials(deepcopy=False)
        assert provenance["arch_hash"] == trial.user_attrs["arch_hash"]
        kept = trial.user_attrs["weights"]["files"]["model.safetensors"]
        assert (tmp_path / f"{storage}.artifacts" / kept).read_bytes() == weights[storage]
    assert weights["a.journal"] != weights["b.journal"]


# 5. A refused creation leaves no study, and the same command is refused the same way again.

def test_a_refused_creation_leaves_no_study(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    argv = t.argv("search", "--trials", "1", "--n-head", "3", "--d-model", "32")
    first = cli(*argv)
    line = assert_one_line_error(first, "search", "n_head")
    assert not t.storage.exists() or study_names(t.storage) == []
    if t.storage.exists():
        assert "tiny" not in cli("studies", "--storage", str(t.storage)).out
    assert assert_one_line_error(cli(*argv), "search") == line


# 6. Values that would make every trial fail are refused before the study is created.

def _space_with(tmp_path: Path, **changes) -> Path:
    space = tmp_path / "bad-space.yaml"
    space.write_text(yaml.safe_dump({**TINY_SPACE, **changes}).replace("'.nan'", ".nan").replace("'.inf'", ".inf"))
    return space


@pytest.mark.parametrize("extra, fragment", [
    (["--beta2", "2"], "beta2"),
    (["--lr", "nan"], "lr"),
    (["--block-size", "100000"], "block_size"),
    ("mlp_ratio_nan", "mlp_ratio"),
    ("mlp_ratio_inf", "mlp_ratio"),
    ("reduce_factor_nan", "reduce_factor"),
])
def test_values_every_trial_would_fail_on_are_refused_before_creation(tmp_path: Path, extra, fragment: str) -> None:
    t = make_tiny(tmp_path)
    if isinstance(extra, str):
        key, value = extra.rsplit("_", 1)
        space = _space_with(tmp_path, **{key: [f".{value}"]})
        extra, fragment = ["--space", str(space)], f"{space}.{key}"  # named where it is written: the space file
    for _ in range(2):
        assert_one_line_error(cli(*t.argv("search", "--trials", "1", *extra)), "search", fragment)
        assert not t.storage.exists() or study_names(t.storage) == []


def test_a_space_refuses_non_finite_choices() -> None:
    from studies.errors import StudyError
    from studies.space import space_from_dict

    for key in ("mlp_ratio", "reduce_factor"):
        for value in (float("nan"), float("inf")):
            with pytest.raises(StudyError, match=f"^space.{key}: {value} is not a finite positive number"):
                space_from_dict({**TINY_SPACE, key: [value]})


# 7. Secrets stay secret; env:VAR names a journal.

def with_password(url: str, password: str) -> str:
    """The URL with `password` for its user (the CI server trusts loopback: any password is accepted)."""
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':')[0]}:{password}@{host}"


def test_a_database_password_never_reaches_the_output(tmp_path: Path, postgres_url: str) -> None:
    t = make_tiny(tmp_path)
    url = with_password(postgres_url, SECRET)
    name = f"secret-{uuid.uuid4().hex[:8]}"
    argv = t.argv("search", "--trials", "1", "--no-presets", study=name)
    argv[argv.index("--storage") + 1] = url
    done = cli(*argv)
    assert done.code == 0, done.err
    assert f"in {with_password(postgres_url, '***')}" in done.out  # the start line names the storage, masked
    assert "Next:" in done.out and SECRET not in done.out + done.err
    listed = cli("studies", "--storage", url)
    assert listed.code == 0 and name in listed.out and SECRET not in listed.out + listed.err
    assert cli("studies", "--storage", url, "--delete", name).code == 0


def test_a_closed_database_port_is_one_line_without_the_password(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    argv = t.argv("search", "--trials", "1")
    argv[argv.index("--storage") + 1] = f"postgresql://u:{SECRET}@127.0.0.1:1/db"
    line = assert_one_line_error(cli(*argv), "search", "postgresql://u:***@127.0.0.1:1/db")
    assert SECRET not in line


def test_an_environment_variable_names_a_journal_for_every_command(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path / "work")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NAS_JOURNAL", str(t.storage))
    argv = t.argv("search", "--trials", "1", "--no-presets", "--keep-checkpoints", "all")
    argv[argv.index("--storage") + 1] = "env:NAS_JOURNAL"
    done = cli(*argv)
    assert done.code == 0, done.err
    assert "--storage env:NAS_JOURNAL" in done.out  # Next: lines keep the variable, not its value
    assert states(t.storage, "tiny") == [TrialState.COMPLETE]
    assert Path(str(t.storage) + ".artifacts").is_dir()
    done = cli("export", "--study", "tiny", "--storage", "env:NAS_JOURNAL", "--trial", "0", "-o", "best.yaml")
    assert done.code == 0, done.err
    assert (tmp_path / "best-checkpoint" / "model.safetensors").is_file()
    assert not list(tmp_path.glob("env:*")) and not list((tmp_path / "work").glob("env:*"))


# 8. A worker killed mid-trial: its lease runs out, another worker retries it, nothing else changes.

def spawn(t: Tiny, command: str, storage: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    argv = t.argv(command, *extra)
    argv[argv.index("--storage") + 1] = storage
    return subprocess.Popen([sys.executable, "-m", "studies.cli", *argv], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(worker: subprocess.Popen, storage: str, name: str, complete: int = 0) -> int:
    """The number of a RUNNING trial whose cheap measures are done (it trains), once `complete` are complete."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()
        try:
            trials = load(storage, name).get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - not created yet
            trials = []
        training = [t for t in trials if t.state == TrialState.RUNNING and "non_embedding_params" in t.user_attrs]
        if training and sum(t.state == TrialState.COMPLETE for t in trials) >= complete:
            return training[0].number
        time.sleep(0.1)
    raise AssertionError("the worker never started training a trial")


SLOW_RECIPE = ("--steps", "100000", "--rungs", "--no-presets")  # trials train for --max-seconds


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_after_its_lease_and_retried(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    storage, lease = str(t.storage), {"DECODER_NAS_LEASE_SECONDS": "4"}  # renewed every second
    first = spawn(t, "worker", storage, *SLOW_RECIPE, "--max-seconds", "2", "--trials", "5", env=lease)
    killed = wait_for_training(first, storage, "tiny", complete=1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    before = {t.number: t.values for t in load(storage, "tiny").get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    assert before and load(storage, "tiny").get_trials(deepcopy=False)[killed].state == TrialState.RUNNING

    time.sleep(6)  # past its last renewal's lease
    second = spawn(t, "worker", storage, *SLOW_RECIPE, "--max-seconds", "2", "--trials", "1", env=lease)
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err

    trials = load(storage, "tiny").get_trials(deepcopy=False)
    assert TrialState.RUNNING not in [trial.state for trial in trials]
    assert trials[killed].state == TrialState.FAIL
    [retry] = [trial for trial in trials if trial.user_attrs.get("retried_from") == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[killed].params
    assert {n: trials[n].values for n in before} == before


# 9. SIGTERM: exit 143, the trial FAIL "terminated", nothing left RUNNING.

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["journal", "sqlite"])
def test_sigterm_fails_the_running_trial_as_terminated(tmp_path: Path, backend: str) -> None:
    t = make_tiny(tmp_path)
    storage = str(t.storage) if backend == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    worker = spawn(t, "search", storage, *SLOW_RECIPE, "--max-seconds", "20", "--trials", "1")
    running = wait_for_training(worker, storage, "tiny")
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    trials = load(storage, "tiny").get_trials(deepcopy=False)
    assert TrialState.RUNNING not in [trial.state for trial in trials]
    assert trials[running].state == TrialState.FAIL
    assert trials[running].user_attrs["fail_reason"] == "terminated"


# 10. Interrupted presets and promotions are trained by the next run.

@pytest.mark.slow
def test_a_promotion_interrupted_mid_trial_is_retrained_by_the_next_promote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path)
    assert cli(*t.argv("search", "--trials", "2", "--no-presets")).code == 0
    flags = ["promote", *t.study_flags(), "--steps", "24", "--gap-trials", "0", "--device", "cpu"]
    stopped = interrupt_once(monkeypatch, lambda attrs: "promoted_from" in attrs)
    assert cli(*flags).code == 130
    assert len(stopped) == 1
    monkeypatch.undo()

    done = cli(*flags)
    assert done.code == 0, done.err
    sibling = load(t.storage, "tiny@24").get_trials(deepcopy=False)
    promoted = [trial for trial in sibling if trial.user_attrs.get("promoted_from") == stopped[0]["promoted_from"]]
    assert [trial.state for trial in promoted] == [TrialState.FAIL, TrialState.COMPLETE]
    assert TrialState.WAITING not in [trial.state for trial in sibling]


def test_a_preset_interrupted_in_search_is_requeued_and_trained_by_the_next_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_tiny(tmp_path)
    stopped = interrupt_once(monkeypatch, lambda attrs: "preset" in attrs)
    assert cli(*t.argv("search", "--trials", "1")).code == 130
    monkeypatch.undo()

    done = cli(*t.argv("search", "--trials", "3"))
    assert done.code == 0, done.err
    trials = load(t.storage, "tiny").get_trials(deepcopy=False)
    preset = [trial for trial in trials if trial.user_attrs.get("preset") == stopped[0]["preset"]]
    assert [trial.state for trial in preset] == [TrialState.FAIL, TrialState.COMPLETE]
    assert preset[0].user_attrs["fail_reason"] == "interrupted by the user"


# 11. A study deleted under a worker.

def test_a_study_deleted_while_a_worker_trains_stops_it_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studies.storage import open_storage

    t = make_tiny(tmp_path)
    original = studies.trials.run_training

    def deleted_meanwhile(*args, **kwargs):
        optuna.delete_study(study_name="tiny", storage=open_storage(str(t.storage)))  # another process deletes it
        return original(*args, **kwargs)

    monkeypatch.setattr(studies.trials, "run_training", deleted_meanwhile)
    done = cli(*t.argv("search", "--trials", "2", "--no-presets"))
    assert_one_line_error(done, "search", "'tiny' was deleted while this worker was running it")
    assert study_names(t.storage) == []


def test_deleting_a_study_with_a_running_trial_says_so(tmp_path: Path) -> None:
    from studies.storage import open_storage

    storage = tmp_path / "s.journal"
    optuna.create_study(study_name="busy", storage=open_storage(str(storage))).ask()
    done = cli("studies", "--storage", str(storage), "--delete", "busy")
    assert done.code == 0, done.err
    assert "deleted study 'busy'" in done.out and "1 trial" in done.out and "running" in done.out
    assert study_names(storage) == []


# 12. Names from other tools, reserved characters, names that need quoting.

def foreign_study(storage: Path, name: str) -> None:
    from studies.storage import open_storage

    study = optuna.create_study(study_name=name, storage=open_storage(str(storage)), directions=["minimize"] * 2)
    for value in (1.0, 2.0):
        study.tell(study.ask(), [value, 3.0 - value])


def test_a_study_named_with_an_at_by_another_tool_does_not_break_pareto(tmp_path: Path) -> None:
    t = make_tiny(tmp_path)
    assert cli(*t.argv("search", "--trials", "1", "--no-presets", study="exp")).code == 0
    foreign_study(t.storage, "exp@laptop")
    done = cli("pareto", "--study", "exp", "--storage", str(t.storage))
    assert done.code == 0, done.err
    assert_one_line_error(cli(*t.argv("search", "--trials", "1", study="exp@laptop")), "search", "'@' is reserved")
    assert len(load(t.storage, "exp@laptop").get_trials(deepcopy=False)) == 2  # untouched


def test_a_name_with_a_space_is_quoted_in_the_next_lines(tmp_path: Path) -> None:
    t = make_tiny(tmp_path / "a folder")
    done = cli(*t.argv("search", "--trials", "1", "--no-presets", study="my exp"))
    assert done.code == 0, done.err
    lines = done.out.split("Next:\n", 1)[1].strip().splitlines()
    assert len(lines) == 5
    for line in lines:
        words = shlex.split(line.split("decoder-nas ", 1)[1])
        assert words[words.index("--study") + 1] == "my exp"
        assert words[words.index("--storage") + 1] == str(t.storage)


def test_a_plain_optuna_study_is_refused_at_once(tmp_path: Path) -> None:
    storage = tmp_path / "s.journal"
    foreign_study(storage, "plain")
    started = time.monotonic()
    done = cli("pareto", "--study", "plain", "--storage", str(storage))
    assert time.monotonic() - started < 5
    assert_one_line_error(done, "pareto", "'plain'", "decoder-nas")
