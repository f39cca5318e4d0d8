"""The proxy-training loop: schedule, optimisation, budgets, failures and evaluation, on tiny models."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from search_space import DecoderConfig, build_decoder, preset
from trainer.data import TokenizedData, prepare_data
from trainer.loop import (
    NonFiniteLossError,
    Progress,
    RecipeError,
    TrainingRecipe,
    evaluate,
    make_optimizer,
    resolve_device,
    train,
)
from trainer.run import run_training

# Fully predictable from a few characters of context: a model that learns anything gets far below ln(vocab).
PATTERN = "the quick brown fox jumps over the lazy dog. "
CPU = torch.device("cpu")


def tiny_gpt(vocab_size: int) -> DecoderConfig:
    return preset("gpt", vocab_size=vocab_size, n_layer=2, n_head=2, d_model=32, block_size=16)


def quick_recipe(**changes: object) -> TrainingRecipe:
    settings = {"steps": 30, "batch_size": 8, "lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 5,
                "eval_windows": 32, "report_every": 10, **changes}
    return TrainingRecipe(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TokenizedData:
    folder = tmp_path_factory.mktemp("loop")
    corpus = folder / "pattern.txt"
    corpus.write_text(PATTERN * 100, encoding="utf-8")  # 4.5 kB
    return prepare_data(str(corpus), "char", cache_dir=folder)


def fresh_model(data: TokenizedData, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_decoder(tiny_gpt(data.vocab_size))


def test_lr_warms_up_linearly_then_follows_a_cosine_to_min_lr_at_the_last_step() -> None:
    recipe = TrainingRecipe(steps=41, lr=1.0, min_lr=0.1, warmup_steps=10)
    lrs = [recipe.lr_at(step) for step in range(recipe.steps)]
    assert lrs[:10] == pytest.approx([(step + 1) / 10 for step in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[25] == pytest.approx(0.55)  # halfway through the decay: halfway between lr and min_lr
    assert lrs[-1] == pytest.approx(0.1)
    assert all(earlier >= later for earlier, later in pairwise(lrs[9:]))


def test_lr_without_warm_up_starts_at_the_peak() -> None:
    recipe = TrainingRecipe(steps=5, lr=0.5, min_lr=0.0, warmup_steps=0)
    assert recipe.lr_at(0) == pytest.approx(0.5)
    assert recipe.lr_at(4) == pytest.approx(0.0)


def test_training_learns_a_predictable_corpus_and_accounts_every_step(data: TokenizedData) -> None:
    recipe = quick_recipe()
    seen: list[Progress] = []
    report = run_training(tiny_gpt(data.vocab_size), data, recipe, "cpu", on_progress=seen.append)
    result = report.result
    assert result.steps == recipe.steps and len(result.loss_curve) == recipe.steps
    assert result.tokens == recipe.steps * recipe.batch_size * 16
    assert result.tokens_per_second > 0 and 0 < result.train_seconds <= result.wall_seconds
    assert result.loss_curve[0] == pytest.approx(math.log(data.vocab_size), rel=0.1)  # starts at chance
    assert result.loss_curve[-1] < 0.5 * result.loss_curve[0]
    assert result.evaluation.loss < 0.5 * math.log(data.vocab_size)
    assert [p.step for p in seen] == [10, 20, 30]
    assert [p.tokens for p in seen] == [step * recipe.batch_size * 16 for step in (10, 20, 30)]
    assert seen[-1].loss == pytest.approx(sum(result.loss_curve[20:]) / 10)


def test_same_seed_reproduces_the_run_and_another_seed_does_not(data: TokenizedData) -> None:
    def run(seed: int) -> tuple[float, list[float]]:
        result = run_training(tiny_gpt(data.vocab_size), data, quick_recipe(steps=8, seed=seed), "cpu").result
        return result.evaluation.loss, result.loss_curve

    first = run(1)
    assert run(1) == first
    assert run(2) != first


def test_grad_accumulation_of_two_half_batches_equals_one_full_batch(data: TokenizedData) -> None:
    # SGD's step is linear in the gradient (Adam's is not), so a mis-scaled accumulation shows up here.
    def one_step(model: torch.nn.Module, batch_size: int, grad_accum: int) -> float:
        recipe = quick_recipe(steps=1, warmup_steps=0, batch_size=batch_size, grad_accum=grad_accum, grad_clip=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr)
        result = train(model, data.train, data.val, recipe, CPU, optimizer=optimizer)
        assert result.tokens == 8 * 16
        return result.loss_curve[0]

    accumulated, whole = fresh_model(data), fresh_model(data)
    assert one_step(accumulated, 4, 2) == pytest.approx(one_step(whole, 8, 1), rel=1e-5)
    moved = False
    for (name, a), b, start in zip(accumulated.named_parameters(), whole.parameters(), fresh_model(data).parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
        moved |= not torch.equal(a, start)
    assert moved


def test_weight_decay_reaches_matrices_and_embeddings_only(tiny_config: DecoderConfig) -> None:
    model = build_decoder(tiny_config)  # two towers, conv and linear reductions with biases
    decayed, undecayed = make_optimizer(model, TrainingRecipe(weight_decay=0.1), CPU).param_groups
    names = {id(p): name for name, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    undecayed_names = {names[id(p)] for p in undecayed["params"]}
    assert decayed["weight_decay"] == 0.1 and undecayed["weight_decay"] == 0.0
    assert decayed_names | undecayed_names == set(names.values()) and not decayed_names & undecayed_names
    assert {"tok_emb.weight", "pos_emb.weight", "head.weight", "towers.0.layers.0.attn.qkv.weight",
            "towers.0.layers.2.conv.weight"} <= decayed_names
    assert {"tower_mix", "ln_f.weight", "towers.0.layers.0.ln_1.weight", "towers.0.layers.2.conv.bias",
            "towers.0.layers.4.linear.bias"} <= undecayed_names


def test_exploding_learning_rate_raises_non_finite_loss(data: TokenizedData) -> None:
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        run_training(tiny_gpt(data.vocab_size), data, quick_recipe(lr=1e9, min_lr=1e9, warmup_steps=0), "cpu")


def test_nan_from_the_first_step_is_caught_at_the_first_report(data: TokenizedData) -> None:
    model = fresh_model(data)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 1-5"):
        train(model, data.train, data.val, quick_recipe(report_every=5), CPU)


@pytest.mark.parametrize("budget", [{"max_tokens": 3 * 8 * 16}, {"max_seconds": 1e-9}])
def test_budgets_stop_training_early(data: TokenizedData, budget: dict[str, float]) -> None:
    recipe = quick_recipe(**budget)
    seen: list[Progress] = []
    result = train(fresh_model(data), data.train, data.val, recipe, CPU, on_progress=seen.append)
    expected_steps = 3 if "max_tokens" in budget else 1
    assert result.steps == expected_steps < recipe.steps
    assert len(result.loss_curve) == expected_steps and result.tokens == expected_steps * 8 * 16
    assert seen[-1].step == expected_steps  # the stop is reported, so a progress bar ends where training did


def test_a_raising_progress_callback_stops_training(data: TokenizedData) -> None:
    def stop(progress: Progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(fresh_model(data), data.train, data.val, quick_recipe(), CPU, on_progress=stop)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(RecipeError, match="not a torch device"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_evaluate_is_fixed_per_seed_and_consistent(data: TokenizedData) -> None:
    model = fresh_model(data).train()
    first = evaluate(model, data.val, n_windows=20, seed=7, device=CPU, batch_size=64)
    assert model.training  # evaluation restores the mode it found
    assert evaluate(model, data.val, 20, 7, CPU, batch_size=64) == first
    rebatched = evaluate(model, data.val, 20, 7, CPU, batch_size=3)  # a ragged last batch must not skew the mean
    assert rebatched.loss == pytest.approx(first.loss, rel=1e-5)
    assert rebatched.accuracy == pytest.approx(first.accuracy)
    assert 0.0 <= first.accuracy <= 1.0
    assert first.perplexity == pytest.approx(math.exp(first.loss))
    assert first.loss == pytest.approx(math.log(data.vocab_size), rel=0.05)  # untrained: chance level per token
    assert evaluate(model, data.val, 20, 8, CPU).loss != first.loss


def test_evaluate_of_a_broken_model_raises(data: TokenizedData) -> None:
    model = fresh_model(data)
    with torch.no_grad():
        model.head.weight.fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match="validation"):
        evaluate(model, data.val, 8, 0, CPU)

