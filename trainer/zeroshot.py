"""Zero-shot multiple choice (COPA, ARC, PIQA, HellaSwag style): which choice does the model find likeliest?

Each choice is scored by the log-likelihood of its continuation tokens given the context, as
lm-evaluation-harness does. Context and choice are encoded separately and joined with a space:
the continuation is `" " + choice`, so every choice starts the same way and tokenises the same
whatever the context. `accuracy` picks the highest summed log-likelihood; `accuracy_norm` divides it
by the continuation's length in characters (lm-eval's acc_norm), so long choices are not penalised
merely for having more tokens to get right, and the figure does not depend on the tokenizer.

Items come from a JSONL file (one row per line) or `hf:NAME[:CONFIG][@SPLIT]` (default split
"validation"); the row schema is detected from its keys, see `_parse_row`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .data import DataError, default_cache_dir
from .hub import require_hub
from .tokenizers import Tokenizer

DEFAULT_HUB_SPLIT = "validation"
_HF_SPEC = re.compile(r"hf:(?P<name>[^:@]+)(?::(?P<config>[^:@]+))?(?:@(?P<split>[^:@]+))?")
_SCHEMAS = (
    "{context, choices, label}, PIQA {goal, sol1, sol2, label}, HellaSwag {ctx, endings, label}, "
    "ARC {question, choices: {text, label}, answerKey}, COPA {premise, choice1, choice2, question, label}"
)


@dataclass(frozen=True)
class MultipleChoiceItem:
    context: str
    choices: list[str]
    label: int  # index of the right choice


@dataclass(frozen=True)
class MultipleChoiceResult:
    accuracy: float  # argmax of summed continuation log-likelihood
    accuracy_norm: float  # argmax of log-likelihood per continuation character
    n_items: int


def load_items(spec: str, limit: int | None = None, cache_dir: Path | None = None) -> list[MultipleChoiceItem]:
    """The first `limit` (all if None) items of a JSONL file or a hub dataset (cached under `cache_dir/datasets`)."""
    rows = _hub_rows(spec, cache_dir) if spec.startswith("hf:") else _jsonl_rows(spec)
    items: list[MultipleChoiceItem] = []
    for where, row in rows:
        if limit is not None and len(items) >= limit:
            break
        items.append(_parse_row(row, where))
    if not items:
        raise DataError(f"{spec!r} holds no multiple-choice items")
    return items


def score_items(
    model: nn.Module,
    tokenizer: Tokenizer,
    items: Sequence[MultipleChoiceItem],
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> MultipleChoiceResult:
    """Accuracy of `model` (already on `device`) on `items`; ties go to the first choice."""
    if not items:
        raise DataError("no items to score")
    correct = correct_norm = 0
    for item, scores in zip(items, _score_choices(model, tokenizer, items, device, batch_size)):
        per_char = [score / len(" " + choice) for score, choice in zip(scores, item.choices)]
        correct += _argmax(scores) == item.label
        correct_norm += _argmax(per_char) == item.label
    return MultipleChoiceResult(correct / len(items), correct_norm / len(items), len(items))


def choice_logprobs(
    model: nn.Module, tokenizer: Tokenizer, item: MultipleChoiceItem, device: torch.device | str = "cpu"
) -> list[float]:
    """Summed log-probability of each choice's continuation tokens given the item's context."""
    return _score_choices(model, tokenizer, [item], device, batch_size=len(item.choices))[0]


def _score_choices(
    model: nn.Module,
    tokenizer: Tokenizer,
    items: Sequence[MultipleChoiceItem],
    device: torch.device | str,
    batch_size: int,
) -> list[list[float]]:
    block_size = model.config.block_size
    windows = [_window(tokenizer, item.context, choice, block_size) for item in items for choice in item.choices]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            flat = [score for start in range(0, len(windows), batch_size)
                    for score in _continuation_logprobs(model, windows[start:start + batch_size], device)]
    finally:
        model.train(was_training)
    scores = iter(flat)
    return [[next(scores) for _ in item.choices] for item in items]


def _window(tokenizer: Tokenizer, context: str, choice: str, block_size: int) -> tuple[list[int], int]:
    """Token ids of context + continuation, cut to the model's reach, and how many end ones are the continuation.

    The model reads at most block_size tokens and each predicts the next, so block_size + 1 ids fit.
    Too long a sequence loses context from the left, never the continuation: that is what is scored.
    """
    context_ids, continuation_ids = tokenizer.encode(context), tokenizer.encode(" " + choice)
    if not context_ids:
        raise DataError(f"empty context: the first token of choice {choice!r} would have nothing to condition on")
    if len(continuation_ids) > block_size:
        raise DataError(f"choice {choice!r} is {len(continuation_ids)} tokens, more than block_size={block_size}")
    return (context_ids + continuation_ids)[-(block_size + 1):], len(continuation_ids)


def _continuation_logprobs(
    model: nn.Module, windows: list[tuple[list[int], int]], device: torch.device | str
) -> list[float]:
    # Right padding: the model is causal, so pad tokens after a sequence cannot change its logits.
    length = max(len(ids) for ids, _ in windows)
    tokens = torch.zeros(len(windows), length, dtype=torch.long)
    is_continuation = torch.zeros(len(windows), length - 1, dtype=torch.bool)  # over target positions
    for row, (ids, n_continuation) in enumerate(windows):
        tokens[row, :len(ids)] = torch.tensor(ids)
        is_continuation[row, len(ids) - 1 - n_continuation:len(ids) - 1] = True
    tokens, is_continuation = tokens.to(device), is_continuation.to(device)
    logprobs = F.log_softmax(model(tokens[:, :-1]).float(), dim=-1)
    # Only the log-prob of each actual continuation token counts. The paper's code summed log_softmax
    # over the whole vocabulary instead: that ignores which tokens a choice holds (it depends only on
    # how many there are), so it cannot measure whether the model prefers the right answer.
    target_logprobs = rearrange(logprobs.gather(-1, rearrange(tokens[:, 1:], "b t -> b t 1")), "b t 1 -> b t")
    return torch.where(is_continuation, target_logprobs, 0.0).sum(-1).tolist()


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # max() keeps the first of equals


def _jsonl_rows(spec: str) -> Iterator[tuple[str, Any]]:
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"multiple-choice file {spec!r} does not exist (expected JSONL or hf:NAME[:CONFIG][@SPLIT])")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield f"{spec} line {number}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{spec} line {number}: not valid JSON ({exc.msg})") from None


def _hub_rows(spec: str, cache_dir: Path | None) -> Iterator[tuple[str, Any]]:
    match = _HF_SPEC.fullmatch(spec)
    if match is None:
        raise DataError(f"malformed data spec {spec!r}: expected hf:NAME[:CONFIG][@SPLIT]")
    name, split = match["name"], match["split"] or DEFAULT_HUB_SPLIT
    datasets_cache = str((cache_dir or default_cache_dir()) / "datasets")
    require_hub(match["name"], spec, DataError)
    import datasets  # only for hub items: loading it costs a second that describe and train need not pay

    try:
        dataset = datasets.load_dataset(name, match["config"], split=split, cache_dir=datasets_cache)
    except ConnectionError:
        raise DataError(f"{spec!r}: could not reach the Hugging Face hub (offline?) and it is not cached") from None
    except datasets.exceptions.DatasetNotFoundError:
        raise DataError(f"{spec!r}: dataset {name!r} was not found on the Hugging Face hub") from None
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{spec!r}: could not load dataset {name!r}: {reason}") from None
    for index, row in enumerate(dataset):
        yield f"{spec} row {index}", row


def _parse_row(row: Any, where: str) -> MultipleChoiceItem:
    """Map one row of any known schema to an item. Prompts are kept plain:

    PIQA and ARC become "Question: ...\\nAnswer:" (lm-eval's prompt); HellaSwag's `ctx` is used as is;
    COPA's premise loses its full stop and gains " because" (question "cause") or " so" ("effect"),
    and its choices start lower case, so "The man fell. / He slipped." reads "The man fell because he slipped."
    """
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    keys = set(row)
    if {"context", "choices", "label"} <= keys and isinstance(row["choices"], list):
        context, choices, label = row["context"], row["choices"], row["label"]
    elif {"goal", "sol1", "sol2", "label"} <= keys:  # PIQA
        context, choices, label = f"Question: {row['goal']}\nAnswer:", [row["sol1"], row["sol2"]], row["label"]
    elif {"ctx", "endings", "label"} <= keys:  # HellaSwag
        context, choices, label = row["ctx"], row["endings"], row["label"]
    elif {"question", "choices", "answerKey"} <= keys and isinstance(row["choices"], Mapping):  # ARC
        context, choices = f"Question: {row['question']}\nAnswer:", row["choices"].get("text")
        letters = list(row["choices"].get("label") or [])
        if row["answerKey"] not in letters:
            raise DataError(f"{where}: bad label: answerKey {row['answerKey']!r} is not one of {letters}")
        label = letters.index(row["answerKey"])
    elif {"premise", "choice1", "choice2", "question", "label"} <= keys:  # COPA
        connective = {"cause": " because", "effect": " so"}.get(row["question"])
        if connective is None:
            raise DataError(f"{where}: COPA question must be 'cause' or 'effect', got {row['question']!r}")
        context = row["premise"].strip().removesuffix(".") + connective
        choices, label = [c[:1].lower() + c[1:] for c in (row["choice1"], row["choice2"])], row["label"]
    else:
        raise DataError(f"{where}: unknown multiple-choice schema; keys found: {sorted(keys)}; known: {_SCHEMAS}")
    if not isinstance(context, str) or not isinstance(choices, list) or len(choices) < 2 \
            or not all(isinstance(c, str) for c in choices):
        raise DataError(f"{where}: need a text context and at least two text choices; keys found: {sorted(keys)}")
    return MultipleChoiceItem(context, choices, _label_index(label, len(choices), where, keys))


def _label_index(label: Any, n_choices: int, where: str, keys: set[str]) -> int:
    # Hub HellaSwag stores labels as strings ("2"); its unlabelled test split has "" and others -1.
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n_choices:
        raise DataError(f"{where}: bad label {label!r} for {n_choices} choices; keys found: {sorted(keys)}")
    return label
