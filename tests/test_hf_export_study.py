"""`export --study … --hf DIR`: a study trial's kept weights, loaded through the artifact
store's own checks, become a Hugging Face folder; a study that kept none is refused before any file
is written."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers loads: it reads this once

import pytest
import torch

from studies.api import Search
from studies.export import remote_code
from study_helpers import Tiny, assert_one_line_error, cli, isolated_python_api, make_tiny, quiet_datasets  # noqa: F401
from trainer.checkpoint import load_checkpoint

transformers = pytest.importorskip("transformers")  # in the test extra, so CI runs these

SEARCH = ("--trials", "2", "--no-presets", "--sampler", "random", "--sampler-seed", "0", "--rungs")


def searched(root: Path, *extra: str) -> Tiny:
    tiny = make_tiny(root)
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(root / "cache"))
        result = cli(*tiny.argv("search", *SEARCH, *extra))
    assert result.code == 0, result.err
    return tiny


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return searched(tmp_path_factory.mktemp("kept"), "--keep-checkpoints", "all")


def test_a_kept_trial_exports_to_a_folder_transformers_loads(kept: Tiny, tmp_path: Path) -> None:
    search = Search.open(kept.study, str(kept.storage))
    done = search.export(trial=0, path=tmp_path / "best.yaml", hf=tmp_path / "hf")
    assert done.takeaway is not None and done.takeaway.hf == tmp_path / "hf"
    ours = load_checkpoint(done.weights).model.eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "hf", trust_remote_code=done.takeaway.hf_class == remote_code.CLASS).eval()
    idx = torch.randint(ours.config.vocab_size, (2, ours.config.block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours(idx), atol=1e-4, rtol=0)
    card = (tmp_path / "hf" / "README.md").read_text()
    assert f"| study | `{kept.study}` |" in card and "| trial | `0` |" in card and "val loss" in card


def test_the_cli_exports_the_knee_as_a_hugging_face_folder(kept: Tiny, tmp_path: Path) -> None:
    result = cli("export", *kept.study_flags(), "--pick", "knee", "-o", str(tmp_path / "best.yaml"),
                 "--hf", str(tmp_path / "hf"))
    assert result.code == 0, result.err
    assert "Hugging Face:" in result.out and (tmp_path / "hf" / "model.safetensors").is_file()


def test_hf_for_a_study_that_kept_no_weights_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    tiny = searched(tmp_path / "study")
    result = cli("export", *tiny.study_flags(), "--trial", "0", "-o", str(tmp_path / "best.yaml"),
                 "--hf", str(tmp_path / "hf"), "--untrained")  # --untrained is for ONNX latency work only
    assert_one_line_error(result, "export", "--hf", "no trained weights", "--keep-checkpoints")
    assert not (tmp_path / "best.yaml").exists() and not (tmp_path / "hf").exists()
