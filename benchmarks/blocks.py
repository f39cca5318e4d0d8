"""Today's blocks at the study's shape on the CPU, next to the paper's presets: what each costs.

    python benchmarks/blocks.py [--rounds 7] [--repeats 20] [--context 64] [--quick]

At the default study's shape (4 layers, 4 heads, d 128, context 64, a 65-character vocabulary):
the paper's four presets, llama and lfm2, and gpt with one new block at a time. Per model the
table gives parameters, FLOPs per token, decode_state_bytes (one sequence's decoding state at full
context) and KV-cache bytes per token, then forward latency (batch 1, full context) and decode
latency (one KV-cached token at the last context position, the cache full; and, as studies created
before that time it, after half the context), each timed by the study's protocol (one thread, the
thread's CPU time) interleaved over the models in `--rounds` rounds of `--repeats` runs: per round
the minimum of its runs, the table the median over rounds, and the relative spread of the round
figures.

A second table times kernels alone, on one thread: attention with a sliding-window mask (what a
windowed layer runs in training and in a forward pass) against the causal path of full attention,
and the conv mixer with its depthwise conv as one einsum over each token's window (as it runs)
against the same through nn.Conv1d. Results: docs/blocks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from objectives import describe
from objectives.latency import LatencyProtocol, system_load, time_together
from search_space import DecoderConfig, build_decoder, preset, summarize
from search_space.model import attention_mask

SEARCH_SHAPE = {"vocab_size": 65, "block_size": 64, "n_layer": 4, "n_head": 4, "d_model": 128}
# column -> how it is timed: a forward pass, a decode step with the cache full, one after half the context
PROTOCOLS = {"forward": {"mode": "forward"}, "decode": {"mode": "decode"},
             "decode at ½": {"mode": "decode", "decode_at": "middle"}}


def with_layers(**changes) -> Callable[[DecoderConfig], DecoderConfig]:
    return lambda config: config.replace(layers=tuple(dataclasses.replace(layer, **changes) for layer in config.layers))


def with_model(**changes) -> Callable[[DecoderConfig], DecoderConfig]:
    return lambda config: config.replace(**changes)


# name: (preset, change of it); the single-block rows change every layer of gpt
ARCHITECTURES: dict[str, tuple[str, Callable[[DecoderConfig], DecoderConfig]]] = {
    "gpt": ("gpt", lambda c: c),
    "pgpt": ("pgpt", lambda c: c),
    "lgpt": ("lgpt", lambda c: c),
    "cgpt": ("cgpt", lambda c: c),
    "llama": ("llama", lambda c: c),
    "lfm2": ("lfm2", lambda c: c),
    "gpt + rope": ("gpt", with_model(position="rope")),
    "gpt + rmsnorm": ("gpt", with_model(norm="rmsnorm")),
    "gpt + swiglu": ("gpt", with_layers(mlp="swiglu")),
    "gpt + qk-norm": ("gpt", with_layers(qk_norm=True)),
    "gpt + 2 KV heads": ("gpt", with_layers(n_kv_head=2)),
    "gpt + 1 KV head": ("gpt", with_layers(n_kv_head=1)),
    "gpt + window 16": ("gpt", with_layers(window=16)),
    "gpt + conv mixers": ("gpt", with_layers(mixer="conv")),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per model per round (default: %(default)s)")
    parser.add_argument("--context", type=int, default=SEARCH_SHAPE["block_size"],
                        help="block_size of the first table's models (default: the study's, %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds of 3 repeats")
    return parser.parse_args()


def round_figures(timings: list[float], repeats: int) -> list[float]:
    """The protocol's estimate (the minimum) of each round's block of runs."""
    return [min(timings[start: start + repeats]) for start in range(0, len(timings), repeats)]


def kernel_pairs() -> list[tuple[str, str, Callable[[], object], Callable[[], object]]]:
    """(what, shape, the way taken, the way not taken or the bound it is held to)."""
    pairs = []
    for context, window in ((64, 16), (256, 64), (1024, 128)):
        q, k, v = torch.randn(3, 1, 8, context, 64)
        mask = attention_mask(context, context, window, q.device)
        pairs.append(("attention: window mask | causal path", f"8 heads of 64, T {context}, W {window}",
                      lambda q=q, k=k, v=v, mask=mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                      lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=True)))
    mixer = build_decoder(preset("lfm2", **SEARCH_SHAPE)).towers[0].layers[0].conv  # layer 0 is a conv mixer
    x = torch.randn(1, SEARCH_SHAPE["block_size"], SEARCH_SHAPE["d_model"])

    def through_conv1d() -> torch.Tensor:  # the same mixer with its depthwise conv run by nn.Conv1d
        b, c, h = mixer.in_proj(x).chunk(3, dim=-1)
        gated = F.pad((b * h).transpose(1, 2), (mixer.history, 0))
        return mixer.out_proj(c * mixer.conv(gated).transpose(1, 2))

    pairs.append(("conv mixer: window einsum | Conv1d", f"d {SEARCH_SHAPE['d_model']}, T {SEARCH_SHAPE['block_size']}, "
                  "k 3", lambda: mixer(x), through_conv1d))
    return pairs


def kernel_table(rounds: int, repeats: int) -> Table:
    table = Table(title="kernels behind the blocks, batch 1, one thread: ms (median over rounds of the minimum)")
    for column in ("kernel: taken | other", "shape", "taken", "other", "ratio"):
        table.add_column(column, justify="left" if column in ("kernel: taken | other", "shape") else "right")
    with torch.inference_mode():
        for what, shape, taken, other in kernel_pairs():
            figures: dict[str, list[float]] = {"taken": [], "other": []}
            for _ in range(rounds):
                for name, call in (("taken", taken), ("other", other)):
                    call()
                    figures[name].append(min(_thread_ms(call) for _ in range(repeats)))
            ms = {name: statistics.median(values) for name, values in figures.items()}
            table.add_row(what, shape, f"{ms['taken']:.3f}", f"{ms['other']:.3f}", f"{ms['taken'] / ms['other']:.2f}")
    return table


def _thread_ms(call: Callable[[], object]) -> float:
    started = time.thread_time()
    call()
    return 1000 * (time.thread_time() - started)


def main() -> None:
    args = parse_args()
    rounds, repeats = (2, 3) if args.quick else (args.rounds, args.repeats)
    torch.manual_seed(0)
    shape = {**SEARCH_SHAPE, "block_size": args.context}
    configs = {name: change(preset(base, **shape)) for name, (base, change) in ARCHITECTURES.items()}
    models = {name: build_decoder(config) for name, config in configs.items()}
    latency = {}
    for column, fields in PROTOCOLS.items():
        timed = time_together(models, LatencyProtocol(**fields, repeats=repeats), rounds=rounds)
        latency[column] = {name: round_figures(timings, repeats) for name, timings in timed.items()}
    load, running = system_load()

    table = Table(title=f"today's blocks at {shape['n_layer']}L/{shape['n_head']}H/d"
                        f"{shape['d_model']}, context {shape['block_size']}, CPU, one thread")
    for column in ("model", "architecture", "params", "FLOPs/token", "decode state B", "KV B/token",
                   *(heading for column in PROTOCOLS for heading in (f"{column} ms", "spread"))):
        table.add_column(column, justify="left" if column in ("model", "architecture") else "right")
    for name, config in configs.items():
        description = describe(config)
        cells = []
        for column in PROTOCOLS:
            figures = latency[column][name]
            median = statistics.median(figures)
            cells += [f"{median:.3f}", f"{(max(figures) - min(figures)) / median:.0%}"]
        table.add_row(name, summarize(config), f"{description.params:,}", f"{description.flops_per_token:,}",
                      f"{description.decode_state_bytes:,}", f"{description.kv_cache_bytes:,}", *cells)
    console = Console(width=200)
    console.print(table)
    console.print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                  f"torch {torch.__version__}; {rounds} interleaved rounds x {repeats} runs per model and column; "
                  f"spread = (slowest - fastest round) / median; load average {load:.2f} after timing"
                  + (f", {running} runnable processes" if running is not None else ""))
    torch.set_num_threads(1)
    console.print(kernel_table(rounds, max(1, repeats // 4)))


if __name__ == "__main__":
    main()
