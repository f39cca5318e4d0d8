"""`decoder-nas describe`: its JSON and table for presets and config files, one-line errors, --debug."""

import json
import subprocess
import sys

import pytest

from studies.cli import main


def test_describe_json_has_the_promised_fields(capsys):
    assert main(["describe", "--preset", "gpt", "--vocab-size", "50304", "--block-size", "1024",
                 "--n-layer", "8", "--n-head", "8", "--d-model", "512", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 77_210_112
    assert out["non_embedding_params"] == 77_210_112 - 50304 * 512 - 1024 * 512
    assert out["flops_per_token"] == pytest.approx(2 * (8 * (12 * 512**2 + 2 * 1024 * 512) + 512 * 50304), rel=0.01)
    assert [row["kind"] for row in out["layers"]].count("sequential") == 8


def test_describe_json_gives_todays_presets_their_decoding_state(capsys):
    assert main(["describe", "--preset", "lfm2", "--vocab-size", "65", "--block-size", "64", "--n-layer", "4",
                 "--n-head", "4", "--d-model", "128", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # layer 2 attends (K and V of 1 KV head of 32 channels, 64 tokens); three conv mixers keep 2 inputs of 128
    assert out["decode_state_bytes"] == (2 * 32 * 64 + 3 * 2 * 128) * 4
    conv, attention = "sequential conv k3 swiglu", "sequential qk-norm swiglu"
    assert [row["kind"] for row in out["layers"] if row["name"].startswith("layer")] == [conv, conv, attention, conv]
    assert main(["describe", "--preset", "llama", "--n-layer", "2", "--n-head", "8", "--d-model", "64"]) == 0
    table = capsys.readouterr().out
    assert "d64 rope rms 2L[S8/2g S8/2g]" in table and "8/2" in table and "decoding state" in table


def test_describe_table_for_a_config_file(capsys, tiny_config, tmp_path):
    from search_space import save_config

    path = save_config(tiny_config, tmp_path / "arch.yaml")
    assert main(["describe", str(path)]) == 0
    out = capsys.readouterr().out
    assert "conv k3" in out and "tower mix" in out


@pytest.mark.parametrize("argv, fragment", [
    (["describe", "--preset", "gpt", "--n-head", "7"], "n_head: 7 heads do not divide"),
    (["describe"], "no architecture"),
    (["describe", "missing.yaml"], "cannot read"),
    (["describe", "--preset", "pgpt", "--n-layer", "3"], "odd"),
    (["describe", "--preset", "llama", "--n-head", "4", "--d-model", "12"], "position: rope rotates pairs"),
])
def test_describe_errors_are_one_line_with_exit_code_2(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_debug_shows_the_traceback():
    from search_space import ConfigError

    with pytest.raises(ConfigError):
        main(["describe", "--preset", "gpt", "--n-head", "7", "--debug"])


@pytest.mark.parametrize("preset", ["gpt", "lfm2"])  # lfm2: conv mixers, counted on a real build
def test_describe_loads_neither_datasets_nor_the_study_api(preset: str) -> None:
    """Start-up: they cost describe a second or more of CPU and it needs none of them (benchmarks/startup.py);
    torch._dynamo and sympy come with meta-device initialisation, which a count of a small model avoids."""
    script = ("import sys; from studies.cli import main; "
              f"assert main(['describe', '--preset', '{preset}', '--n-layer', '2', '--d-model', '32', "
              "'--block-size', '16', '--vocab-size', '17', '--json']) == 0; "
              "print([m for m in ('datasets', 'studies.api', 'sqlalchemy', 'torch._dynamo', 'sympy') "
              "if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
