"""GPU throughput of the training loop: the paper's gpt preset (8 layers, d 512, context 1024) for a
few hundred steps in bf16, with and without torch.compile; tokens/s and model FLOPs utilisation.

MFU = 3 × forward FLOPs per token (forward + backward ≈ 3 forwards) × tokens/s / the card's peak
dense bf16 FLOP/s. Forward FLOPs come from objectives.count_flops (matmuls and attention).

    python benchmarks/gpu_check.py [--steps 300] [--batch-size 16] [--peak-tflops 989]

Runs on CPU too (for a smoke test: --device cpu --steps 3 --batch-size 1), where MFU is not printed.
"""

from __future__ import annotations

import argparse
import datetime

import torch

from objectives import count_flops
from search_space import preset
from trainer.loop import TrainingRecipe, resolve_device, train
from trainer.run import initialised_model

# Dense bf16 peaks (no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "4090": 165.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak (default: by its name)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    config = preset("gpt", vocab_size=50304, block_size=1024, n_layer=8, n_head=8, d_model=512)
    flops_per_token = count_flops(config)
    tokens = torch.randint(config.vocab_size, (4_000_000,))
    print(f"{name} · torch {torch.__version__} · {datetime.date.today()} · gpt 8L/8H/512, context 1024, "
          f"batch {args.batch_size}, {args.steps} steps, bf16 autocast")
    print(f"{'compile':>8} {'tokens/s':>12} {'MFU':>7} {'first report s':>15}")
    for compiled in (False, True):
        recipe = TrainingRecipe(steps=args.steps, batch_size=args.batch_size, lr=6e-4, min_lr=6e-5,
                                warmup_steps=min(50, args.steps // 5), beta2=0.95, eval_windows=8,
                                eval_batch_size=8, compile=compiled, report_every=max(1, args.steps // 10))
        model = initialised_model(config, 0)
        reports: list[tuple[int, float]] = []  # (tokens, seconds) at each progress report
        train(model, tokens, tokens[:100_000], recipe, device,
              on_progress=lambda p: reports.append((p.tokens, p.seconds)))
        # Steady state: from the first report (compilation and warm-up behind us) to the last.
        (tokens_0, seconds_0), (tokens_1, seconds_1) = reports[0], reports[-1]
        rate = (tokens_1 - tokens_0) / (seconds_1 - seconds_0) if seconds_1 > seconds_0 else tokens_1 / seconds_1
        mfu = f"{3 * flops_per_token * rate / (peak * 1e12):.1%}" if peak and device.type == "cuda" else "-"
        print(f"{str(compiled):>8} {rate:>12,.0f} {mfu:>7} {seconds_0:>15.1f}")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
