"""Run folders (save, load, resume) and KV-cached generation from them, on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model

import trainer.generate
from conftest import CORPUS_TEXT as TEXT
from search_space import DecoderConfig, build_decoder, preset
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.data import DataError, TokenizedData, prepare_data
from trainer.generate import generate
from trainer.loop import Progress, TrainingRecipe, evaluate
from trainer.run import RunReport, resume_training, run_training
from trainer.tokenizers import CharTokenizer, TokenizerError

STEPS = 10
RECIPE = TrainingRecipe(steps=STEPS, batch_size=4, lr=1e-2, warmup_steps=2, eval_windows=16, report_every=5)


@pytest.fixture
def data(corpus: Path, cache: Path) -> TokenizedData:
    return prepare_data(str(corpus), "char", cache_dir=cache)


@pytest.fixture
def run(tmp_path: Path, data: TokenizedData) -> RunReport:
    """STEPS steps of a tiny gpt, checkpointed to tmp_path/run."""
    config = preset("gpt", n_layer=2, n_head=2, d_model=32, block_size=16)
    return run_training(config, data, RECIPE, "cpu", tmp_path / "run")


@pytest.mark.parametrize("shape", ["tiny_config", "modern_config"])
def test_save_and_load_give_identical_logits_and_tokenizer(tmp_path: Path, shape: str,
                                                           request: pytest.FixtureRequest) -> None:
    config: DecoderConfig = request.getfixturevalue(shape)  # every kind of weight, the old and today's blocks
    torch.manual_seed(0)
    model = build_decoder(config)
    tokenizer = CharTokenizer("abcdefghijklmnopq")
    save_checkpoint(tmp_path / "ckpt", model, tokenizer, RECIPE, {"step": 3})
    loaded = load_checkpoint(tmp_path / "ckpt")
    idx = torch.randint(config.vocab_size, (2, config.block_size))
    model.eval()
    loaded.model.eval()
    assert torch.equal(loaded.model(idx), model(idx))
    assert loaded.config == config and loaded.recipe == RECIPE and loaded.record == {"step": 3}
    assert loaded.tokenizer.encode("cabbage") == tokenizer.encode("cabbage")
    assert loaded.tokenizer.decode(tokenizer.encode("cabbage")) == "cabbage"


def test_a_trained_run_folder_holds_the_trained_model(run: RunReport, data: TokenizedData) -> None:
    checkpoint = load_checkpoint(run.checkpoint)
    assert checkpoint.record["step"] == STEPS and len(checkpoint.record["loss_curve"]) == STEPS
    assert checkpoint.record["content_hash"] == data.content_hash
    assert checkpoint.config.vocab_size == data.vocab_size  # the tokenizer's, not the preset's 50304
    assert checkpoint.tokenizer.encode(TEXT[:50]) == data.tokenizer.encode(TEXT[:50])
    # Re-scoring the saved weights reproduces the metric recorded at the end of training.
    rescored = evaluate(checkpoint.model, data.val, RECIPE.eval_windows, RECIPE.seed, torch.device("cpu"))
    assert rescored.loss == pytest.approx(checkpoint.record["metrics"]["val_loss"], rel=1e-6)


def test_resume_continues_from_the_saved_step(run: RunReport, cache: Path) -> None:
    seen: list[Progress] = []
    resumed = resume_training(run.checkpoint, steps=STEPS + 5, device="cpu", on_progress=seen.append, cache_dir=cache)
    result = resumed.result
    assert result.steps == STEPS + 5 and len(result.loss_curve) == STEPS + 5
    assert result.loss_curve[:STEPS] == run.result.loss_curve
    assert result.tokens == (STEPS + 5) * RECIPE.batch_size * 16  # the whole run, as its steps are
    session = result.tokens - result.resumed_tokens
    assert session == 5 * RECIPE.batch_size * 16 and result.tokens_per_second == session / result.train_seconds
    assert [p.step for p in seen] == [STEPS + 5] and seen[-1].tokens == session
    record = json.loads((run.checkpoint / "run.json").read_text())
    assert record["step"] == STEPS + 5 and record["recipe"]["steps"] == STEPS + 5
    assert record["metrics"]["val_loss"] == result.evaluation.loss
    # The AdamW state came along: its step counter continues rather than restarting at 0.
    optimizer_state = torch.load(run.checkpoint / "optimizer.pt", weights_only=True)
    assert all(state["step"] == STEPS + 5 for state in optimizer_state["state"].values())


def test_resume_refuses_a_finished_run(run: RunReport, cache: Path) -> None:
    with pytest.raises(DataError, match=f"already trained {STEPS} of {STEPS} steps"):
        resume_training(run.checkpoint, device="cpu", cache_dir=cache)


def test_resume_refuses_a_changed_corpus(run: RunReport, corpus: Path, cache: Path) -> None:
    corpus.write_text(TEXT.replace("wolves", "wolfs"), encoding="utf-8")
    with pytest.raises(DataError, match="the corpus .* changed since .* was trained"):
        resume_training(run.checkpoint, steps=STEPS + 5, device="cpu", cache_dir=cache)


def test_loading_a_folder_that_is_no_checkpoint_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(DataError, match="not a decoder-nas checkpoint"):
        load_checkpoint(tmp_path)


def test_generation_is_reproducible_by_seed(run: RunReport) -> None:
    checkpoint = load_checkpoint(run.checkpoint)

    def sample(seed: int) -> str:
        return generate(checkpoint.model, checkpoint.tokenizer, "3 little", 30, temperature=1.0, top_k=None,
                        seed=seed).text

    first = sample(0)
    assert first.startswith("3 little") and len(first) == len("3 little") + 30
    assert sample(0) == first
    assert sample(1) != first


@pytest.mark.parametrize("shape", ["gpt", "tiny_config", "modern_config"])
def test_cached_generation_matches_rerunning_the_whole_context(
    shape: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """modern_config: a windowed layer drops keys and rope positions restart with each rebuilt cache."""
    if shape == "gpt":
        config = preset("gpt", vocab_size=17, n_layer=2, n_head=2, d_model=32, block_size=16)
    else:
        config = request.getfixturevalue(shape)
    torch.manual_seed(0)
    model = build_decoder(config)
    with torch.no_grad():
        model.head.weight.mul_(50)  # well-separated logits, so greedy choices are no near-ties
    seen_logits: list[torch.Tensor] = []

    def recording_sample(logits: torch.Tensor, *args: object) -> int:
        seen_logits.append(logits.clone())
        return int(logits.argmax())

    monkeypatch.setattr(trainer.generate, "_sample", recording_sample)
    prompt = "abcde"
    tokenizer = CharTokenizer("abcdefghijklmnopq")
    new_tokens = generate(model, tokenizer, prompt, max_new_tokens=40, top_k=1, seed=0).new_tokens

    # The reference: no cache, the whole current context through the model at every step. Like
    # generate, once the context would outgrow block_size it restarts from its last half.
    block = config.block_size
    sequence, start = tokenizer.encode(prompt), 0
    for step, token in enumerate(new_tokens):
        with torch.no_grad():
            expected = model(torch.tensor([sequence[start:]]))[0, -1]
        torch.testing.assert_close(seen_logits[step], expected, atol=1e-4, rtol=1e-4, msg=f"step {step}")
        assert token == int(expected.argmax())
        sequence.append(token)
        if len(sequence) - start > block:
            start = len(sequence) - block // 2
    assert len(sequence) > 2 * block  # the cache was rebuilt more than once


def test_generation_rejects_nonsense_settings(run: RunReport) -> None:
    checkpoint = load_checkpoint(run.checkpoint)
    with pytest.raises(TokenizerError, match="max_new_tokens"):
        generate(checkpoint.model, checkpoint.tokenizer, "1", max_new_tokens=0)


@pytest.mark.parametrize("settings, message", [
    ({"top_k": 0}, "top_k: 0 must be at least 1"),
    ({"temperature": float("nan")}, "temperature: nan must be a finite number above 0"),
    ({"temperature": float("inf")}, "temperature: inf must be a finite number above 0"),
])
def test_generation_refuses_a_setting_that_cannot_sample(run: RunReport, settings: dict, message: str) -> None:
    checkpoint = load_checkpoint(run.checkpoint)
    with pytest.raises(TokenizerError, match=message):
        generate(checkpoint.model, checkpoint.tokenizer, "1", max_new_tokens=3, **settings)


def _other_architecture(folder: Path) -> None:
    """Four heads where two were trained: the same weight shapes, another model."""
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("n_head: 2", "n_head: 4"))


def _weights_of_another_shape(folder: Path) -> None:
    narrower = preset("gpt", vocab_size=17, n_layer=2, n_head=2, d_model=16, block_size=16)
    save_model(build_decoder(narrower), str(folder / "model.safetensors"))


@pytest.mark.parametrize("spoil, message", [
    (lambda folder: (folder / "model.safetensors").unlink(), "model.safetensors is missing"),
    (lambda folder: (folder / "run.json").unlink(), "run.json is missing"),
    (lambda folder: (folder / "model.safetensors").write_bytes(b"\0" * 10), "model.safetensors: damaged"),
    (_weights_of_another_shape, "model.safetensors: damaged, or not the weights of config.yaml"),
    (lambda folder: (folder / "run.json").write_text('{"recipe": {"steps": '), "run.json: unreadable or not JSON"),
    (_other_architecture, "run.json: trained architecture"),
    (lambda folder: (folder / "optimizer.pt").write_bytes(b"junk"), "optimizer.pt: damaged"),
])
def test_a_tampered_run_folder_is_one_line_naming_the_file(run: RunReport, cache: Path, spoil, message: str) -> None:
    spoil(run.checkpoint)
    with pytest.raises(DataError) as error:
        resume_training(run.checkpoint, steps=STEPS + 5, device="cpu", cache_dir=cache)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_resume_names_what_run_json_lacks(run: RunReport, cache: Path) -> None:
    run_file = run.checkpoint / "run.json"
    record = json.loads(run_file.read_text())
    del record["data_spec"]
    run_file.write_text(json.dumps(record))
    with pytest.raises(DataError, match="run.json: no 'data_spec' recorded"):
        resume_training(run.checkpoint, steps=STEPS + 5, device="cpu", cache_dir=cache)
