"""The GPU evidence, one section at a time: `gpu_check.sh` runs each section in a process of its own
under a time box, and each writes what it measured into OUT/gpu_check.json as it goes, so a section
that fails or runs out of time still leaves the others' figures (and its own so far).

    python benchmarks/gpu_check.py SECTION --out DIR [--device auto] [--quick]
    python benchmarks/gpu_check.py report --out DIR        # OUT/gpu_check.md from the JSON

Sections: preflight (versions, GPU, every needed import: exits 3 if one is missing), proxy (the
search's proxy shape at batch 12/48/192/768: ms/step by CUDA events, kernels per step, MFU, peak
memory, and the real loop's ms/step), graph (batch 12: eager, a CUDA-graph-captured train step,
torch.compile(mode="reduce-overhead") with its compile time apart), jobs (`search --jobs 1/4/8`
on one device: trials per hour, per-trial fixed cost), latency (alone, while another process
trains, and under the per-GPU timing lock), determinism (one trial twice: the same loss curve,
bit for bit?), paper (the paper's gpt, 8 layers d512 context 1024, for 100 steps).

MFU = 3 x forward FLOPs per token (objectives.count_flops) x tokens/s / the card's dense bf16 peak.
`--quick` shrinks every size so the whole check runs on a CPU in a minute or two (the rehearsal and
tests/test_gpu_check.py); CUDA-only parts are then recorded as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

RESULTS = "gpu_check.json"
REPORT = "gpu_check.md"
# Dense bf16 peaks (no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "4090": 165.0}
# Import name -> distribution: every module decoder-nas imports that the device image may lack.
NEEDED = {"optuna": "optuna", "datasets": "datasets", "fvcore": "fvcore", "plotly": "plotly",
          "optuna_dashboard": "optuna-dashboard", "psycopg": "psycopg", "einops": "einops", "rich": "rich",
          "yaml": "pyyaml", "tokenizers": "tokenizers", "safetensors": "safetensors", "numpy": "numpy",
          "sqlalchemy": "sqlalchemy", "alembic": "alembic", "torch": "torch"}
OPTIONAL = {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime"}
PROJECT = ("search_space", "trainer.loop", "objectives", "studies.cli", "studies.workers.jobs")
PROXY_VOCAB = 96  # about a character vocabulary
SIZES = {  # full (a GPU) and quick (a CPU rehearsal)
    False: {"batches": (12, 48, 192, 768), "warmup": 10, "timed": 50, "loop_steps": 60, "jobs": (1, 4, 8),
            "job_window": 40.0, "job_trials": 1000, "job_steps": 300, "busy_warmup": 12.0, "det_steps": 100,
            "paper_steps": 100},
    True: {"batches": (2, 4), "warmup": 1, "timed": 3, "loop_steps": 3, "jobs": (2,),
           "job_window": 300.0, "job_trials": 1, "job_steps": 2, "busy_warmup": 4.0, "det_steps": 3, "paper_steps": 3},
}


class Results:
    """OUT/gpu_check.json, rewritten (atomically) after every figure."""

    def __init__(self, out: Path):
        self.path = out / RESULTS
        out.mkdir(parents=True, exist_ok=True)

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def put(self, section: str, key: str, value: Any) -> None:
        data = self.read()
        data.setdefault(section, {})[key] = value
        partial = self.path.with_suffix(".part")
        partial.write_text(json.dumps(data, indent=1, default=str))
        partial.replace(self.path)
        print(f"[{section}] {key}: {json.dumps(value, default=str)[:300]}", flush=True)


# --- shared pieces -------------------------------------------------------------------------------

def proxy_config(vocab_size: int = PROXY_VOCAB):
    """The search's proxy shape: a 4-layer d128 decoder at context 64 (the default space's middle)."""
    from search_space import preset
    from studies.settings import SEARCH_BLOCK_SIZE

    return preset("gpt", vocab_size=vocab_size, block_size=SEARCH_BLOCK_SIZE, n_layer=4, n_head=4, d_model=128)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_tflops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in PEAK_TFLOPS.items() if key in name), None)


def train_step(model, optimizer, x, y, device, zero_grad: bool = True, cache_enabled: bool = True) -> Callable:
    """trainer.loop.train's step without sampling and scheduling: forward in bf16 autocast on CUDA,
    fp32 loss, backward, clipping at 1.0, fused AdamW. `cache_enabled=False` for graph capture."""
    import torch
    import torch.nn.functional as F

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda",
                            cache_enabled=cache_enabled):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if zero_grad:
            optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def ms_per_call(work: Callable, device, calls: int) -> float:
    """Mean ms per call: CUDA events on the current stream of `device`, else the wall clock."""
    import torch

    synchronize(device)
    if device.type == "cuda":
        with torch.cuda.device(device):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                work()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / calls
    started = time.perf_counter()
    for _ in range(calls):
        work()
    return 1000 * (time.perf_counter() - started) / calls


def kernels_per_call(work: Callable, device) -> int:
    """GPU kernels (and copies) one call launches; on a CPU, the ATen ops it runs (nested ones too)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        work()
        synchronize(device)
    events = prof.events()
    if device.type == "cuda":
        return sum(1 for event in events if event.device_type == DeviceType.CUDA)
    return sum(1 for event in events if event.name.startswith("aten::"))


def new_model_and_optimizer(config, device, **optimizer_options):
    import torch

    from trainer.loop import make_optimizer
    from trainer.recipe import TrainingRecipe
    from trainer.run import initialised_model

    model = initialised_model(config, 0).to(device).train()
    if optimizer_options:  # the loop's parameter groups, with other options (capturable for graphs)
        groups = make_optimizer(model, TrainingRecipe(), device).param_groups
        optimizer = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]} for g in groups],
                                      lr=1e-3, betas=(0.9, 0.99), **optimizer_options)
    else:
        optimizer = make_optimizer(model, TrainingRecipe(), device)
    return model, optimizer


def random_batch(config, batch: int, device):
    import torch

    generator = torch.Generator().manual_seed(batch)
    x = torch.randint(config.vocab_size, (batch, config.block_size), generator=generator).to(device)
    return x, torch.roll(x, -1, dims=1)


def free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


# --- sections ------------------------------------------------------------------------------------

def preflight(results: Results, device, sizes: dict) -> None:
    import importlib.metadata as metadata

    import torch

    results.put("preflight", "python", platform.python_version())
    results.put("preflight", "machine", f"{platform.machine()}, {os.cpu_count()} CPUs")
    results.put("preflight", "torch", f"{torch.__version__} (CUDA {torch.version.cuda}, cuDNN "
                                      f"{torch.backends.cudnn.version() if torch.cuda.is_available() else None})")
    results.put("preflight", "device", str(device))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        results.put("preflight", "gpu", f"{props.name}, {props.total_memory / 2**30:.1f} GiB, "
                                        f"{props.multi_processor_count} SMs, sm_{props.major}{props.minor}")
        results.put("preflight", "peak_bf16_tflops", peak_tflops(device))
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.used,utilization.gpu",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            results.put("preflight", "nvidia_smi", smi.stdout.strip())
    missing, found = [], {}
    for module, dist in {**NEEDED, **OPTIONAL}.items():
        try:
            importlib.import_module(module)
            found[dist] = metadata.version(dist)
        except Exception as exc:  # an import that breaks on the image's versions is as bad as a missing one
            found[dist] = f"MISSING: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if module in NEEDED:
                missing.append(dist)
    results.put("preflight", "packages", found)
    for module in PROJECT:
        try:
            importlib.import_module(module)
        except Exception as exc:
            missing.append(f"{module} ({type(exc).__name__}: {exc})")
    try:  # the data path end to end (datasets, pyarrow, dill, tokenizers): an import alone can pass where this fails
        from trainer import DEFAULT_DATA_SPEC, prepare_data

        results.put("preflight", "builtin_corpus_tokens", len(prepare_data(DEFAULT_DATA_SPEC).train))
    except Exception as exc:
        missing.append(f"the built-in corpus ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
        traceback.print_exc()
    with contextlib.suppress(Exception):
        import onnxruntime

        results.put("preflight", "onnxruntime_providers", onnxruntime.get_available_providers())
    results.put("preflight", "missing", missing)
    if missing:
        banner = "!" * 72
        print(f"{banner}\nPREFLIGHT FAILED: missing or broken: {', '.join(missing)}\n"
              f"(build .whl/ with benchmarks/gpu_wheels.py and carry it)\n{banner}", file=sys.stderr, flush=True)
        raise SystemExit(3)


def proxy(results: Results, device, sizes: dict) -> None:
    import torch

    from objectives import count_flops
    from trainer.loop import train
    from trainer.recipe import TrainingRecipe

    config = proxy_config()
    flops = count_flops(config)
    peak = peak_tflops(device)
    results.put("proxy", "shape", f"gpt 4 layers d128 4 heads, context {config.block_size}, vocab {config.vocab_size}, "
                                  f"{flops / 1e6:.2f} MFLOPs/token forward")
    tokens = torch.randint(config.vocab_size, (200_000,), generator=torch.Generator().manual_seed(0))
    for batch in sizes["batches"]:
        free(device)
        model, optimizer = new_model_and_optimizer(config, device)
        x, y = random_batch(config, batch, device)
        step = train_step(model, optimizer, x, y, device)
        for _ in range(sizes["warmup"]):
            step()
        ms = ms_per_call(step, device, sizes["timed"])
        tokens_per_s = batch * config.block_size / (ms / 1000)
        row = {"ms_per_step": ms, "tokens_per_s": tokens_per_s, "kernels_per_step": kernels_per_call(step, device),
               "mfu": 3 * flops * tokens_per_s / (peak * 1e12) if peak else None, "peak_mib": peak_mib(device)}
        # The real loop (sampling, schedule, progress syncs every 10 steps), timed by its own wall clock.
        recipe = TrainingRecipe(steps=sizes["loop_steps"], batch_size=batch, warmup_steps=0, eval_windows=1,
                                eval_batch_size=1)
        result = train(model, tokens, tokens[:10_000], recipe, device)
        row["loop_ms_per_step"] = 1000 * result.train_seconds / result.steps
        results.put("proxy", f"batch_{batch}", row)
        del model, optimizer, step


def graph(results: Results, device, sizes: dict) -> None:
    import torch

    config = proxy_config()
    batch = 12
    x, y = random_batch(config, batch, device)
    model, optimizer = new_model_and_optimizer(config, device)
    eager = train_step(model, optimizer, x, y, device)
    for _ in range(sizes["warmup"]):
        eager()
    results.put("graph", "eager_ms_per_step", ms_per_call(eager, device, sizes["timed"]))
    del model, optimizer, eager
    if device.type != "cuda":
        results.put("graph", "cuda_graph", "skipped: needs CUDA")
    else:
        try:
            results.put("graph", "cuda_graph", _cuda_graph_step(config, x, y, device, sizes))
        except Exception as exc:
            results.put("graph", "cuda_graph", f"failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
    free(device)
    if device.type != "cuda" and not os.environ.get("GPU_CHECK_COMPILE_ON_CPU"):
        results.put("graph", "compile_reduce_overhead", "skipped: needs CUDA (GPU_CHECK_COMPILE_ON_CPU=1 forces)")
        return
    torch._dynamo.reset()
    model, optimizer = new_model_and_optimizer(config, device)
    compiled = torch.compile(model, mode="reduce-overhead")
    step = train_step(compiled, optimizer, x, y, device)
    started = time.perf_counter()
    for _ in range(3):  # compilation of forward and backward, then the graphs' recording
        step()
    synchronize(device)
    results.put("graph", "compile_seconds", time.perf_counter() - started)
    for _ in range(sizes["warmup"]):
        step()
    results.put("graph", "compile_ms_per_step", ms_per_call(step, device, sizes["timed"]))


def _cuda_graph_step(config, x, y, device, sizes: dict) -> dict[str, Any]:
    """The whole train step (forward, backward, clipping, capturable fused AdamW) as one CUDA graph."""
    import torch

    model, optimizer = new_model_and_optimizer(config, device, fused=True, capturable=True)
    step = train_step(model, optimizer, x, y, device, zero_grad=False, cache_enabled=False)
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires
        for _ in range(3):
            step()
            optimizer.zero_grad(set_to_none=True)
    torch.cuda.current_stream(device).wait_stream(side)
    optimizer.zero_grad(set_to_none=True)  # backward in the capture allocates the grads from the graph's pool
    captured = torch.cuda.CUDAGraph()
    started = time.perf_counter()
    with torch.cuda.graph(captured):
        loss = step()
    capture_seconds = time.perf_counter() - started
    ms = ms_per_call(captured.replay, device, sizes["timed"])
    losses = []
    for _ in range(5):
        captured.replay()
        losses.append(loss.item())
    return {"ms_per_step": ms, "capture_seconds": capture_seconds, "loss_falls": losses[-1] < losses[0],
            "kernels_per_replay": kernels_per_call(captured.replay, device)}


def jobs(results: Results, device, sizes: dict) -> None:
    import optuna

    from studies.storage.backends import open_storage
    from studies.workers.trial_record import trained
    from studies.workers.trials import stopped

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="gpu-check-jobs-") as scratch:
        for count in sizes["jobs"]:
            journal = Path(scratch, f"jobs{count}.journal")
            argv = [sys.executable, "-m", "studies", "search", "--study", f"jobs{count}", "--storage", str(journal),
                    "--jobs", str(count), "--trials", str(sizes["job_trials"]), "--steps", str(sizes["job_steps"]),
                    "--device", str(device)]
            started = time.time()
            window = _run_for(argv, sizes["job_window"], Path(scratch, f"jobs{count}.log"))
            study = optuna.load_study(study_name=f"jobs{count}", storage=open_storage(str(journal), create=False))
            done = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete and trained(t)
                           and t.state.name in ("COMPLETE", "PRUNED")), key=lambda t: t.datetime_complete)
            row: dict[str, Any] = {"window_seconds": window, "trained": len(done),
                                   "per_hour_with_startup": 3600 * len(done) / window if window else None}
            if len(done) >= 2:
                span = (done[-1].datetime_complete - done[0].datetime_complete).total_seconds()
                row["per_hour_steady"] = 3600 * (len(done) - 1) / span if span > 0 else None
                row["first_trial_after_s"] = done[0].datetime_complete.timestamp() - started
            overheads = [(t.datetime_complete - t.datetime_start).total_seconds() - t.user_attrs["train_seconds"]
                         for t in done if "train_seconds" in t.user_attrs]
            if overheads:
                row["fixed_cost_median_s"] = statistics.median(overheads)
                row["train_seconds_median"] = statistics.median(t.user_attrs["train_seconds"] for t in done
                                                                if "train_seconds" in t.user_attrs)
            row["failed"] = sum(t.state.name == "FAIL" and not stopped(t) for t in study.get_trials(deepcopy=False))
            results.put("jobs", f"jobs_{count}", row)


def _run_for(argv: list[str], seconds: float, log: Path, env: dict | None = None) -> float:
    """Run a command for `seconds` (or until it exits), then Ctrl-C it; its seconds run."""
    with log.open("w") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        started = time.monotonic()
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        elapsed = min(time.monotonic() - started, seconds)
    print(log.read_text()[-1500:], flush=True)
    return elapsed


def latency(results: Results, device, sizes: dict) -> None:
    from objectives import measure_latency
    from studies.workers.gpu_share import timing_turn
    from trainer.run import initialised_model

    model = initialised_model(proxy_config(), 0).to(device)

    def figures() -> dict[str, float]:
        measured = measure_latency(model)
        return {"ms": measured.ms, "median_ms": measured.median_ms, "p10_ms": measured.p10_ms,
                "p90_ms": measured.p90_ms}

    results.put("latency", "alone", figures())
    with tempfile.TemporaryDirectory(prefix="gpu-check-busy-") as scratch:
        argv = [sys.executable, "-m", "studies", "search", "--study", "busy", "--storage", f"{scratch}/busy.journal",
                "--jobs", "1", "--trials", "1000", "--steps", "300", "--no-presets", "--device", str(device)]
        with Path(scratch, "busy.log").open("w") as log:
            trainer = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                time.sleep(sizes["busy_warmup"])  # past imports and data: training
                results.put("latency", "while_training", figures())
                with timing_turn(device):
                    results.put("latency", "while_training_with_lock", figures())
            finally:
                os.killpg(trainer.pid, signal.SIGKILL)
                trainer.wait()


def determinism(results: Results, device, sizes: dict) -> None:
    from trainer import DEFAULT_DATA_SPEC, prepare_data
    from trainer.recipe import TrainingRecipe
    from trainer.run import run_training

    data = prepare_data(DEFAULT_DATA_SPEC)
    config = proxy_config(data.vocab_size)
    recipe = TrainingRecipe(steps=sizes["det_steps"], warmup_steps=0, eval_windows=20)
    runs = [run_training(config, data, recipe, str(device)) for _ in range(2)]
    first, second = (run.result for run in runs)
    results.put("determinism", "steps", sizes["det_steps"])
    results.put("determinism", "loss_curve_bitwise_equal", first.loss_curve == second.loss_curve)
    results.put("determinism", "max_loss_difference",
                max(abs(a - b) for a, b in zip(first.loss_curve, second.loss_curve)))
    results.put("determinism", "val_loss", [first.evaluation.loss, second.evaluation.loss])


def paper(results: Results, device, sizes: dict) -> None:
    import torch

    from objectives import count_flops
    from search_space import preset
    from trainer.loop import train
    from trainer.recipe import TrainingRecipe
    from trainer.run import initialised_model

    quick = sizes is SIZES[True]
    shape = dict(vocab_size=512, block_size=128, n_layer=2, n_head=2, d_model=64) if quick else \
        dict(vocab_size=50304, block_size=1024, n_layer=8, n_head=8, d_model=512)
    batch = 2 if quick else 16
    config = preset("gpt", **shape)
    results.put("paper", "shape", {**shape, "batch": batch, "steps": sizes["paper_steps"]})
    tokens = torch.randint(config.vocab_size, (2_000_000,), generator=torch.Generator().manual_seed(0))
    recipe = TrainingRecipe(steps=sizes["paper_steps"], batch_size=batch, lr=6e-4, min_lr=6e-5, warmup_steps=10,
                            beta2=0.95, eval_windows=8, eval_batch_size=8,
                            report_every=max(1, sizes["paper_steps"] // 10))
    free(device)
    reports: list[tuple[int, float]] = []
    train(initialised_model(config, 0), tokens, tokens[:100_000], recipe, device,
          on_progress=lambda p: reports.append((p.tokens, p.seconds)))
    # Steady state: from the first report (warm-up behind us) to the last.
    (tokens_0, seconds_0), (tokens_1, seconds_1) = reports[0], reports[-1]
    rate = (tokens_1 - tokens_0) / (seconds_1 - seconds_0) if seconds_1 > seconds_0 else tokens_1 / seconds_1
    peak = peak_tflops(device)
    results.put("paper", "eager", {"tokens_per_s": rate, "mfu": 3 * count_flops(config) * rate / (peak * 1e12)
                                   if peak else None, "peak_mib": peak_mib(device)})


SECTIONS: dict[str, Callable[[Results, Any, dict], None]] = {
    "preflight": preflight, "proxy": proxy, "graph": graph, "jobs": jobs, "latency": latency,
    "determinism": determinism, "paper": paper,
}


# --- the report ----------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, dict):
        return "; ".join(f"{key} {_cell(item)}" for key, item in value.items())
    return str(value)


def report(out: Path) -> str:
    data = Results(out).read()
    lines = ["# gpu_check", ""]
    for section, figures in data.items():
        lines += [f"## {section}", "", "| what | value |", "|---|---|"]
        lines += [f"| {key} | {_cell(value).replace('|', '/')} |" for key, value in figures.items()]
        lines.append("")
    text = "\n".join(lines)
    (out / REPORT).write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=[*SECTIONS, "report"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a CPU rehearsal")
    parser.add_argument("--set-status", metavar="TEXT", help="record TEXT as the section's status, run nothing "
                                                           "(gpu_check.sh: a section it stopped at its time box)")
    args = parser.parse_args()
    if args.set_status:
        results = Results(args.out)
        done = str(results.read().get(args.section, {}).get("status", ""))
        if done.startswith("ok"):  # it finished its work, then was slow to exit: not a failure
            results.put(args.section, "status", f"{done} (then stopped while exiting)")
            return
        results.put(args.section, "status", args.set_status)
        raise SystemExit(1)
    if args.section == "report":
        print(report(args.out))
        return
    from trainer.loop import resolve_device

    device = resolve_device(args.device)
    results = Results(args.out)
    started = time.perf_counter()
    try:
        SECTIONS[args.section](results, device, SIZES[args.quick])
        results.put(args.section, "status", f"ok in {time.perf_counter() - started:.1f} s")
    except SystemExit:
        results.put(args.section, "status", "failed: see the log")
        raise
    except BaseException as exc:
        results.put(args.section, "status", f"failed after {time.perf_counter() - started:.1f} s: "
                                            f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        raise SystemExit(1)


if __name__ == "__main__":
    main()
