"""How faithfully `export --hf/--onnx` carries a trained model: the paper's four presets (and ConvGPT
at kernel 3), each trained briefly on a char corpus, exported from its run folder, then compared.

    python benchmarks/export_fidelity.py [--steps 100] [--data /work/shared/data/tinyshakespeare.txt]

Prints, per model: the transformers class, the largest |logit| difference transformers - PyTorch and
ONNX Runtime - PyTorch (fp32, random ids, full context, batch 4), whether greedy decoding of 50
tokens gives the same tokens as `decoder-nas generate --top-k 1`, and the export time. Needs the hf
and onnx extras.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import transformers
from rich.console import Console
from rich.table import Table

from search_space import DecoderConfig, preset
from studies.export.model_export import export_run
from trainer import DEFAULT_DATA_SPEC, prepare_data
from trainer.checkpoint import load_checkpoint
from trainer.generate import generate
from trainer.loop import TrainingRecipe
from trainer.run import run_training

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
PROMPT = "ROMEO:\n"


def with_kernel(config: DecoderConfig, kernel: int) -> DecoderConfig:
    layers = tuple(layer if layer.reduction is None else
                   dataclasses.replace(layer, reduction=dataclasses.replace(layer.reduction, kernel_size=kernel))
                   for layer in config.layers)
    return config.replace(layers=layers)


def models() -> dict[str, DecoderConfig]:
    shape = dict(block_size=64, n_layer=4, n_head=4, d_model=64)
    configs = {name: preset(name, **shape) for name in ("gpt", "pgpt", "lgpt", "cgpt")}
    configs["cgpt k3"] = with_kernel(configs["cgpt"], 3)
    return configs


def measure(name: str, config: DecoderConfig, data, steps: int, root: Path) -> list[str]:
    run = root / name.replace(" ", "-")
    run_training(config, data, TrainingRecipe(steps=steps, batch_size=8, eval_windows=8), "cpu", run)
    started = time.perf_counter()
    done = export_run(run, hf=root / f"{run.name}-hf", onnx=root / f"{run.name}.onnx")
    seconds = time.perf_counter() - started
    ours = load_checkpoint(run)
    model = ours.model.eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        done.hf, trust_remote_code=done.hf_class != "GPT2LMHeadModel").eval()
    idx = torch.randint(model.config.vocab_size, (4, config.block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hf_difference = float((theirs(idx).logits - model(idx)).abs().max())
    prompt = torch.tensor([ours.tokenizer.encode(PROMPT)])
    greedy = theirs.generate(prompt, max_new_tokens=50, do_sample=False)[0, prompt.size(1):].tolist()
    same = greedy == generate(model, ours.tokenizer, PROMPT, 50, top_k=1).new_tokens
    return [name, done.hf_class, f"{hf_difference:.1e}", f"{done.onnx_difference:.1e}", "yes" if same else "NO",
            f"{seconds:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--data", default=str(SHAKESPEARE) if SHAKESPEARE.is_file() else DEFAULT_DATA_SPEC)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = prepare_data(args.data, "char")
    table = Table(title=f"export fidelity ({args.steps} training steps on {args.data}, char tokens)")
    for column in ("model", "transformers class", "max |Δ| HF", "max |Δ| ONNX (b1, b4)", "greedy 50 same",
                   "export s"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as scratch:
        for name, config in models().items():
            table.add_row(*measure(name, config, data, args.steps, Path(scratch)))
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
