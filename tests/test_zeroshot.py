"""Zero-shot multiple-choice scoring: continuation-only log-likelihoods, truncation, schemas, errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import datasets
import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search_space import build_decoder, preset
from trainer.data import DataError
from trainer.tokenizers import make_tokenizer
from trainer.zeroshot import MultipleChoiceItem, choice_logprobs, load_items, score_items

BYTES = make_tokenizer("byte", "")  # one id per UTF-8 byte: test strings map to ids by hand


class FixedLogits(nn.Module):
    """The same next-token logits at every position: a model whose preferences we know exactly."""

    def __init__(self, favoured: dict[str, float], block_size: int = 64):
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size, vocab_size=256)
        self.logits = torch.zeros(256)
        for char, logit in favoured.items():
            self.logits[ord(char)] = logit
        self.inputs: list[torch.Tensor] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        assert idx.size(1) <= self.config.block_size, "input longer than the model's context"
        self.inputs.append(idx)
        return self.logits.expand(*idx.shape, 256)


def tiny_decoder(block_size: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return build_decoder(preset("gpt", vocab_size=256, block_size=block_size, n_layer=2, n_head=2, d_model=32))


def hand_logprob(model: nn.Module, context: str, choice: str) -> float:
    """Sum of log p(token) over the continuation, from one forward pass on the whole sequence."""
    context_ids, continuation_ids = BYTES.encode(context), BYTES.encode(" " + choice)
    ids = torch.tensor([(context_ids + continuation_ids)[-(model.config.block_size + 1):]])
    with torch.no_grad():
        logprobs = F.log_softmax(model.eval()(ids[:, :-1]), dim=-1)[0]
    n = len(continuation_ids)
    targets = ids[0, -n:]
    return logprobs[-n:].gather(-1, targets[:, None]).sum().item()


def test_scores_continuation_tokens_not_whole_vocabulary():
    # " " and "b" are likely, everything else is not: " bbbb" is the likely continuation.
    model = FixedLogits({" ": 10.0, "b": 10.0})
    item = MultipleChoiceItem("ctx", ["a", "bbbb"], label=1)
    assert score_items(model, BYTES, [item]).accuracy == 1.0

    # The paper's whole-vocabulary sum only sees how many positions a choice spans, so it prefers
    # the shorter, unlikely "a": the test above would catch that mistake.
    whole_vocab = [
        F.log_softmax(model.logits, dim=-1).sum().item() * len(" " + choice) for choice in item.choices
    ]
    assert max(range(2), key=lambda i: whole_vocab[i]) != item.label


def test_choice_logprobs_match_hand_computation():
    model = tiny_decoder()
    item = MultipleChoiceItem("The cat sat on the", ["mat", "very long armchair"], label=0)
    scores = choice_logprobs(model, BYTES, item)  # both choices in one padded batch
    expected = [hand_logprob(model, item.context, choice) for choice in item.choices]
    assert scores == pytest.approx(expected, abs=1e-4)


def test_batching_does_not_change_scores():
    model = tiny_decoder()
    items = [MultipleChoiceItem("a" * n, ["x", "yy" * n, "zzz"], label=n % 3) for n in range(1, 6)]
    one_by_one = [choice_logprobs(model, BYTES, item) for item in items]
    batched = score_items(model, BYTES, items, batch_size=7)
    unbatched = score_items(model, BYTES, items, batch_size=1)
    assert batched == unbatched
    assert batched.n_items == 5
    expected_correct = sum(max(range(3), key=lambda i: s[i]) == item.label for s, item in zip(one_by_one, items))
    assert batched.accuracy == expected_correct / 5


def test_sum_and_length_normalised_can_disagree():
    # log p(" ") = log p("b") ≈ -0.7 and log p("c") ≈ -2.8: " c" has the higher total (-3.5 vs -6.3 for
    # " bbbbbbbb") but the lower per-character score (-1.7 vs -0.7).
    model = FixedLogits({" ": 10.0, "b": 10.0, "c": 8.0})
    item = MultipleChoiceItem("ctx", ["c", "bbbbbbbb"], label=0)
    short, long = choice_logprobs(model, BYTES, item)
    assert short > long and short / 2 < long / 9
    result = score_items(model, BYTES, [item])
    assert (result.accuracy, result.accuracy_norm) == (1.0, 0.0)


def test_left_truncation_keeps_the_continuation():
    block_size = 8
    model = tiny_decoder(block_size)
    item = MultipleChoiceItem("a long context that is far longer than eight tokens", ["end", "stop"], label=0)
    scores = choice_logprobs(model, BYTES, item)
    assert scores == pytest.approx([hand_logprob(model, item.context, c) for c in item.choices], abs=1e-4)

    spy = FixedLogits({}, block_size=block_size)
    choice_logprobs(spy, BYTES, item)
    (inputs,) = spy.inputs
    # Input = the last block_size + 1 ids minus the final one (the model never reads what it predicts last).
    assert [BYTES.decode(row.tolist()) for row in inputs] == ["okens en", "kens sto"]


def test_continuation_longer_than_block_size_is_an_error():
    item = MultipleChoiceItem("ctx", ["far too long a choice", "no"], label=1)
    with pytest.raises(DataError, match="block_size=8"):
        score_items(FixedLogits({}, block_size=8), BYTES, [item])


def test_restores_training_mode():
    model = tiny_decoder().train()
    score_items(model, BYTES, [MultipleChoiceItem("ctx", ["a", "b"], 0)])
    assert model.training


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"context": "Sky is", "choices": ["blue", "green"], "label": 0}, MultipleChoiceItem("Sky is", ["blue", "green"], 0)),
        (
            {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "eat the lid", "label": 0},
            MultipleChoiceItem("Question: Open a jar\nAnswer:", ["twist the lid", "eat the lid"], 0),
        ),
        (
            {"ctx": "He picks up the bat and", "endings": ["swings", "sleeps", "sings", "sits"], "label": "2"},
            MultipleChoiceItem("He picks up the bat and", ["swings", "sleeps", "sings", "sits"], 2),
        ),
        (
            {"question": "What is hot?", "choices": {"text": ["ice", "fire", "snow"], "label": ["A", "B", "C"]}, "answerKey": "B"},
            MultipleChoiceItem("Question: What is hot?\nAnswer:", ["ice", "fire", "snow"], 1),
        ),
        (
            {"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He won.", "question": "cause", "label": 0},
            MultipleChoiceItem("The man fell because", ["he slipped.", "he won."], 0),
        ),
        (
            {"premise": "It rained.", "choice1": "The grass got wet.", "choice2": "It was dry.", "question": "effect", "label": 1},
            MultipleChoiceItem("It rained so", ["the grass got wet.", "it was dry."], 1),
        ),
    ],
    ids=["generic", "piqa", "hellaswag", "arc", "copa-cause", "copa-effect"],
)
def test_each_schema_loads(tmp_path, row, expected):
    assert load_items(write_jsonl(tmp_path / "items.jsonl", [row, "", row])) == [expected, expected]


def test_limit(tmp_path):
    rows = [{"context": str(i), "choices": ["a", "b"], "label": i % 2} for i in range(5)]
    assert [item.context for item in load_items(write_jsonl(tmp_path / "items.jsonl", rows), limit=2)] == ["0", "1"]


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"text": "x", "answer": 1}, r"line 2: unknown multiple-choice schema; keys found: \['answer', 'text'\]"),
        ({"context": "x", "choices": ["a", "b"], "label": 2}, r"line 2: bad label 2 for 2 choices"),
        ({"ctx": "x", "endings": ["a", "b"], "label": ""}, r"line 2: bad label '' for 2 choices"),
        ({"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}, r"line 2: bad label.*'E'"),
        ({"premise": "p.", "choice1": "a", "choice2": "b", "question": "why", "label": 0}, r"line 2: COPA question"),
        ("{not json", r"line 2: not valid JSON"),
    ],
)
def test_bad_rows_name_the_line_and_keys(tmp_path, bad_row, message):
    good = {"context": "x", "choices": ["a", "b"], "label": 0}
    with pytest.raises(DataError, match=message):
        load_items(write_jsonl(tmp_path / "items.jsonl", [good, bad_row]))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_items(str(tmp_path / "nope.jsonl"))


def test_offline_hub_spec_fails_fast_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # datasets and huggingface_hub read those variables once, at import; set what they read.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as error:
        load_items("hf:decoder-nas-tests/no-such-dataset@validation", cache_dir=tmp_path)
    assert "offline" in str(error.value) and "\n" not in str(error.value)
