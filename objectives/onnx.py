"""ONNX export of a Decoder's forward pass, and an onnxruntime session that runs it for latency.

The graph maps token ids [B, T] int64 ("idx") to logits [B, T, vocab] ("logits"), batch and sequence
axes dynamic (a latency graph is fixed at [1, T]); it has no KV cache, so it serves full-context
forward passes, not single-token decoding.

Exporter: torch.onnx.export(dynamo=True), the torch.export-based one (it needs onnxscript). At torch
2.13 both it and the legacy TorchScript exporter (dynamo=False) reproduce PyTorch's logits to ~1e-9
for every layer kind (sequential and parallel blocks, linear and causal-conv reductions, k > 1,
several towers), with a dynamic sequence axis; the dynamo one also for today's blocks (grouped-query,
windowed and qk-normed attention, rope, RMSNorm, SwiGLU, conv mixers: ~4e-10). The legacy one
exports ~10x faster (0.15 s against ~2 s for 4 layers at d128) but is deprecated since torch 2.9 and
warns on every call; the dynamo one is what torch maintains, and two seconds are small next to a
trial's training.

onnx, onnxscript and onnxruntime are optional (`pip install -e '.[onnx]'`): they are imported only
when called for, and a missing one raises OnnxUnavailable with that install line.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import torch

from search_space import Decoder

INPUT_NAME = "idx"
OUTPUT_NAME = "logits"
INSTALL_HINT = "ONNX Runtime latency and --onnx export need the onnx extra: pip install -e '.[onnx]'"


class OnnxUnavailable(ImportError):
    """onnx, onnxscript or onnxruntime is not installed; the message is one line saying how to fix it."""


def require_onnx() -> None:
    """Raise OnnxUnavailable now, rather than in every trial, when the onnx extra is missing."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        _require(module)


def export_onnx(model: Decoder, path: str | Path, seq_len: int | None = None) -> Path:
    """Write the forward pass to `path`. Without seq_len the batch and sequence axes are dynamic
    (sequence 1..block_size); with it the graph is fixed at batch 1 and that length."""
    path = Path(path)
    _onnx_program(model, seq_len).save(path)
    return path


def onnx_max_difference(model: Decoder, path: str | Path, batches: tuple[int, ...] = (1, 4), seed: int = 0) -> float:
    """The largest |logit| difference between onnxruntime running the graph at `path` and PyTorch,
    over random token ids at each batch size (full context)."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    with _eval_mode(model), torch.no_grad():
        device = next(model.parameters()).device
        for batch in batches:
            idx = torch.randint(model.config.vocab_size, (batch, model.config.block_size), generator=generator)
            expected = model(idx.to(device)).float().cpu()
            got = torch.from_numpy(session.run(None, {INPUT_NAME: idx.numpy()})[0])
            worst = max(worst, float((got - expected).abs().max()))
    return worst


def onnx_runner(model: Decoder, idx: torch.Tensor, threads: int) -> Callable[[], object]:
    """A zero-argument callable running one forward on idx [1, T] in onnxruntime (returns its outputs)."""
    ort = _require("onnxruntime")
    # Fixed at idx's length: static shapes let onnxruntime fold more (measured ~5% faster than dynamic).
    program = _onnx_program(model, seq_len=idx.size(1))
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), _session_options(ort, threads), providers=_providers(ort, idx.device)
    )
    if "CUDAExecutionProvider" in session.get_providers():
        # I/O binding: the input stays on the GPU and the logits are left there, so a run times the
        # model rather than two host copies; run_with_iobinding returns once the outputs are ready.
        device_id = idx.device.index or 0
        binding = session.io_binding()
        binding.bind_ortvalue_input(INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(idx.cpu().numpy(), "cuda", device_id))
        binding.bind_output(OUTPUT_NAME, "cuda", device_id)

        def run_bound() -> object:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return binding

        return run_bound
    feed = {INPUT_NAME: idx.cpu().numpy()}
    return lambda: session.run(None, feed)


def _onnx_program(model: Decoder, seq_len: int | None) -> torch.onnx.ONNXProgram:
    for module in ("onnx", "onnxscript"):
        _require(module)
    block_size = model.config.block_size
    length = block_size if seq_len is None else seq_len
    if not 1 <= length <= block_size:
        raise ValueError(f"seq_len: {length} must be between 1 and the context length {block_size}")
    dynamic = seq_len is None
    # torch.export specialises a dimension of size 1, so the dynamic batch is traced at 2.
    example = torch.zeros(2 if dynamic else 1, length, dtype=torch.long, device=next(model.parameters()).device)
    axes = {0: torch.export.Dim("batch", min=1)}
    if block_size > 1:  # a Dim cannot span a single value, so a one-token context is exported fixed
        axes[1] = torch.export.Dim("seq_len", min=1, max=block_size)
    dynamic_shapes = (axes,) if dynamic else None
    with _eval_mode(model), _quiet_exporter():
        return torch.onnx.export(
            model, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes, optimize=True, verbose=False,
        )


def _session_options(ort: ModuleType, threads: int) -> object:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def _providers(ort: ModuleType, device: torch.device) -> list:
    # The CUDA provider exists only in the onnxruntime-gpu wheel; the CPU one takes any op it lacks.
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    warnings.warn(f"onnxruntime has no CUDA provider here (install onnxruntime-gpu): the model on {device} "
                  "is timed in ONNX Runtime on the CPU", RuntimeWarning, stacklevel=3)
    return ["CPUExecutionProvider"]


def _require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OnnxUnavailable(f"{INSTALL_HINT} ({module} is missing)") from exc


@contextlib.contextmanager
def _eval_mode(model: Decoder) -> Iterator[None]:
    """Export what inference runs (no dropout), then leave the model in the mode it came in."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs skipped torchvision ops and torch-internal deprecations; none concern us."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
