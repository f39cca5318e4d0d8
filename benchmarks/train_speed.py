"""Training speed of trainer.loop.train against a plain nanoGPT-style loop, at nanoGPT's CPU shape.

    python benchmarks/train_speed.py [--steps 200] [--repeats 3] [--device cpu]
    python benchmarks/train_speed.py --cases idle busy [--steps 200] [--repeats 3]

Both loops train the same architecture (checked: identical logits from identical weights) on
character-level tinyshakespeare with the same batch and optimizer settings, alternating, each
repeat on a fresh model after a few untimed warm-up steps. Reports training tokens per second (the
training steps only; set-up and evaluation excluded).

Without --cases both run in this process with torch's defaults. With --cases each run is a process
of its own: decoder-nas's starts as `decoder-nas train` does (trainer/threads.py chooses the wait
policy from the load, before torch loads), the plain loop with torch's defaults; `busy` runs a
spinning Python process beside it (one core busy). Cases and loops are interleaved, and each run
reports the CPU other processes used meanwhile (in cores), since "idle" is only idle on a machine
no one else uses.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[1:3] == ["--child", "decoder-nas"]:
    from trainer.threads import configure_process

    POLICY = configure_process()  # as the CLI does for the commands that train, before torch loads

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import reference_loop  # this script's folder is on sys.path when it runs as `python benchmarks/...`
import torch
from rich.console import Console
from rich.table import Table

from search_space import Decoder, DecoderConfig, build_decoder, preset
from trainer.data import TokenizedData, prepare_data
from trainer.loop import TrainingRecipe, make_optimizer, resolve_device, train
from trainer.threads import cpu_sample, other_load

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
SHAPE = {"n_layer": 4, "n_head": 4, "d_model": 128, "block_size": 64}  # nanoGPT's shakespeare_char on CPU
BATCH_SIZE = 12


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a text file (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per repeat (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before each run (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--cases", nargs="+", choices=CASES, help="each run in a process of its own, in these "
                        "cases: idle (nothing started beside it) and busy (a spinning process beside it)")
    parser.add_argument("--child", choices=("decoder-nas", "reference"), help=argparse.SUPPRESS)
    return parser.parse_args()


def ours(config: DecoderConfig, data: TokenizedData, recipe: TrainingRecipe, device: torch.device,
         warmup: int, steps: int) -> float:
    """Tokens/s of trainer.loop.train over `steps` steps, after `warmup` steps with the same optimizer."""
    torch.manual_seed(recipe.seed)
    model = build_decoder(config)
    optimizer = make_optimizer(model.to(device), recipe, device)
    timed = dataclasses.replace(recipe, steps=warmup + steps)
    if warmup:
        train(model, data.train, data.val, dataclasses.replace(timed, steps=warmup), device, optimizer=optimizer)
    result = train(model, data.train, data.val, timed, device, optimizer=optimizer, start_step=warmup)
    return result.tokens_per_second


def reference(config: DecoderConfig, tokens: np.ndarray, recipe: TrainingRecipe, device: torch.device,
              warmup: int, steps: int) -> float:
    """Tokens/s of the plain loop in reference_loop.py, timed the same way."""
    torch.manual_seed(recipe.seed)
    model = reference_loop.GPT(reference_shape(config)).to(device)
    optimizer = reference_loop.configure_optimizer(model, recipe.weight_decay, recipe.lr,
                                                   (recipe.beta1, recipe.beta2), device)
    schedule = reference_loop.Schedule(recipe.lr, recipe.min_lr, recipe.warmup_steps, warmup + steps)

    def run(first_step: int, count: int) -> float:
        return reference_loop.train_steps(model, optimizer, tokens, schedule, first_step, count,
                                          recipe.batch_size, recipe.grad_clip)

    run(0, warmup)
    return steps * recipe.batch_size * config.block_size / run(warmup, steps)


def reference_shape(config: DecoderConfig) -> reference_loop.GPTShape:
    return reference_loop.GPTShape(config.vocab_size, config.block_size, len(config.layers),
                                   config.layers[0].n_head, config.d_model)


def check_same_architecture(config: DecoderConfig) -> int:
    """Both models, given the same weights, must give the same logits: else the race is unfair."""
    ours_model: Decoder = build_decoder(config)
    theirs = reference_loop.GPT(reference_shape(config))
    # Both declare their parameters in the same order (embeddings, then per block ln_1, qkv, proj, ln_2, fc, proj).
    theirs.load_state_dict(dict(zip(theirs.state_dict(), ours_model.state_dict().values(), strict=True)))
    idx = torch.randint(config.vocab_size, (2, config.block_size))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx, idx)[0], ours_model(idx))
    return sum(p.numel() for p in ours_model.parameters())


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one (platform.processor() often says only x86_64)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


CASES = ("idle", "busy")
SPINNER = "while True: pass"


def child(args: argparse.Namespace) -> None:
    """One timed run of one loop in this process; prints tokens/s, the others' load and the policy."""
    device = resolve_device(args.device)
    data = prepare_data(str(args.data), "char")
    config = preset("gpt", vocab_size=data.vocab_size, **SHAPE)
    recipe = TrainingRecipe(batch_size=BATCH_SIZE, eval_windows=1)
    before = cpu_sample()
    if args.child == "decoder-nas":
        rate = ours(config, data, recipe, device, args.warmup, args.steps)
    else:
        rate = reference(config, np.asarray(data.train, dtype=np.uint16), recipe, device, args.warmup, args.steps)
    after = cpu_sample()
    print(json.dumps({"tokens_per_second": rate, "other_load": other_load(before, after) if before else None,
                      "policy": globals().get("POLICY", "torch default"), "threads": torch.get_num_threads()}))


def separate_processes(args: argparse.Namespace) -> None:
    """Every (case, loop) run as its own process, interleaved; a table of medians and ratios."""
    runs: dict[tuple[str, str], list[dict]] = {}
    loops = ["decoder-nas", "reference"]
    for repeat in range(args.repeats):
        for case in args.cases:
            spinner = subprocess.Popen([sys.executable, "-c", SPINNER]) if case == "busy" else None
            try:
                for loop in loops if repeat % 2 == 0 else reversed(loops):
                    argv = [sys.executable, __file__, "--child", loop, "--steps", str(args.steps), "--warmup",
                            str(args.warmup), "--data", str(args.data), "--device", args.device]
                    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                                          "OMP_NUM_THREADS")}
                    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
                    run = json.loads(done.stdout.strip().splitlines()[-1])
                    runs.setdefault((case, loop), []).append(run)
                    print(f"repeat {repeat + 1} {case} {loop}: {run['tokens_per_second']:,.0f} tokens/s, others "
                          f"{run['other_load']:.2f} cores, {run['policy']}, {run['threads']} threads at the end",
                          file=sys.stderr, flush=True)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    console = Console()
    console.print(f"torch {torch.__version__} · {cpu_name()} · {os.cpu_count()} CPUs (nproc) · "
                  f"load average {os.getloadavg()[0]:.1f} · {datetime.datetime.now().isoformat(timespec='seconds')}")
    console.print(f"gpt {SHAPE} · batch {BATCH_SIZE} · {args.repeats} x {args.steps} timed steps after "
                  f"{args.warmup} warm-up · each run a process of its own")
    table = Table(title="training tokens/s (median), each run a separate process")
    for column in ("case", "decoder-nas", "plain loop", "decoder-nas / plain", "others' load (cores, median)",
                   "decoder-nas policy"):
        table.add_column(column, justify="left" if column in ("case", "decoder-nas policy") else "right")
    for case in args.cases:
        ours_runs, plain_runs = runs[(case, "decoder-nas")], runs[(case, "reference")]
        ours_rate = statistics.median(r["tokens_per_second"] for r in ours_runs)
        plain_rate = statistics.median(r["tokens_per_second"] for r in plain_runs)
        load = statistics.median(r["other_load"] for r in ours_runs + plain_runs)
        policies = ", ".join(sorted({r["policy"] for r in ours_runs}))
        table.add_row(case, f"{ours_rate:,.0f}", f"{plain_rate:,.0f}", f"{ours_rate / plain_rate:.2f}",
                      f"{load:.2f}", policies)
    console.print(table)


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    if args.cases:
        separate_processes(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = prepare_data(str(args.data), "char")
    config = preset("gpt", vocab_size=data.vocab_size, **SHAPE)
    params = check_same_architecture(config)
    # nanoGPT's CPU recipe; one validation window, since evaluation is not timed anyway.
    recipe = TrainingRecipe(batch_size=BATCH_SIZE, eval_windows=1)
    tokens = data.train  # a uint16 memory map, as nanoGPT's train.bin

    loops: dict[str, Callable[[], float]] = {
        "decoder-nas": lambda: ours(config, data, recipe, device, args.warmup, args.steps),
        "reference": lambda: reference(config, tokens, recipe, device, args.warmup, args.steps),
    }
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(args.repeats):
        order = list(loops) if repeat % 2 == 0 else list(reversed(loops))  # alternate who goes first
        for name in order:
            rates[name].append(loops[name]())

    console = Console()
    console.print(f"torch {torch.__version__} · {torch.get_num_threads()} threads · "
                  f"{cpu_name()} · {os.cpu_count()} CPUs (nproc) · "
                  f"load average {os.getloadavg()[0]:.1f} · device {device} · "
                  f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    console.print(f"gpt {SHAPE} · vocab {data.vocab_size} · {params:,} params · batch {BATCH_SIZE} · "
                  f"{args.repeats} x {args.steps} timed steps after {args.warmup} warm-up")
    table = Table(title="training tokens/s")
    for column in ("loop", "median", "min", "max", "ours / reference"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    reference_median = statistics.median(rates["reference"])
    for name, values in rates.items():
        median = statistics.median(values)
        table.add_row(name, f"{median:,.0f}", f"{min(values):,.0f}", f"{max(values):,.0f}",
                      f"{median / reference_median:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
