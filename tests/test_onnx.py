"""ONNX export and the onnxruntime runner reproduce PyTorch's logits for every layer kind."""

import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from conftest import decoder_configs
from objectives import OnnxUnavailable, export_onnx, onnx_max_difference, onnx_runner
from search_space import DecoderConfig, LayerConfig, Reduction, build_decoder

ort = pytest.importorskip("onnxruntime")  # in the test extra, so CI runs these
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-4


def config_of(*layers: LayerConfig, towers: int = 1, **model_keys) -> DecoderConfig:
    return DecoderConfig(vocab_size=23, block_size=12, d_model=16, layers=layers, towers=towers, **model_keys)


LAYER_KINDS = {
    "sequential": config_of(LayerConfig(n_head=2), LayerConfig(n_head=4)),
    "parallel": config_of(LayerConfig(layout="parallel", n_head=2), LayerConfig(layout="parallel", n_head=2)),
    "linear reduction": config_of(LayerConfig(n_head=2, reduction=Reduction("linear", 8)), LayerConfig(n_head=2)),
    "conv reduction k3": config_of(LayerConfig(n_head=2, reduction=Reduction("conv", 8, kernel_size=3)),
                                   LayerConfig(n_head=2)),
    "3 towers": config_of(LayerConfig(n_head=2), LayerConfig(layout="parallel", n_head=2), towers=3),
    "today's blocks": config_of(LayerConfig(n_head=4, n_kv_head=2, window=3, qk_norm=True, mlp="swiglu"),
                                LayerConfig(layout="parallel", mixer="conv", reduction=Reduction("conv", 8, 3)),
                                LayerConfig(n_head=2, n_kv_head=1), towers=2, norm="rmsnorm", position="rope"),
}


def torch_logits(model: torch.nn.Module, idx: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return model(idx).numpy()


def random_tokens(config: DecoderConfig, length: int, batch: int = 1) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(length))


@pytest.mark.slow
@pytest.mark.parametrize("config", LAYER_KINDS.values(), ids=LAYER_KINDS.keys())
def test_exported_graph_matches_pytorch_at_every_length(config, tmp_path):
    torch.manual_seed(0)
    model = build_decoder(config)
    session = ort.InferenceSession(export_onnx(model, tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    # Batch and sequence axes are dynamic: one graph serves one token, a partial and the full context,
    # one sequence or four.
    for batch, length in ((1, 1), (4, 5), (1, config.block_size), (4, config.block_size)):
        idx = random_tokens(config, length, batch)
        (logits,) = session.run(None, {"idx": idx.numpy()})
        assert logits.shape == (batch, length, config.vocab_size)
        np.testing.assert_allclose(logits, torch_logits(model, idx), atol=TOLERANCE, rtol=0)


def test_max_difference_measures_the_graph_against_the_model(tiny_config, tmp_path):
    model = build_decoder(tiny_config)
    path = export_onnx(model, tmp_path / "model.onnx")
    assert onnx_max_difference(model, path) < TOLERANCE
    with torch.no_grad():
        model.head.weight.add_(torch.randn_like(model.head.weight))  # the model moved on; the graph did not
    assert onnx_max_difference(model, path) > 100 * TOLERANCE


@pytest.mark.slow
def test_a_config_mixing_every_kind_exports(tiny_config, tmp_path):
    model = build_decoder(tiny_config)
    session = ort.InferenceSession(export_onnx(model, tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    idx = random_tokens(tiny_config, tiny_config.block_size)
    np.testing.assert_allclose(session.run(None, {"idx": idx.numpy()})[0], torch_logits(model, idx), atol=TOLERANCE)


@pytest.mark.slow
def test_seq_len_fixes_the_input_shape(tiny_config, tmp_path):
    model = build_decoder(tiny_config)
    dynamic = onnx.load(export_onnx(model, tmp_path / "dynamic.onnx"))
    fixed = onnx.load(export_onnx(model, tmp_path / "fixed.onnx", seq_len=5))

    def input_dims(graph_model):
        return [d.dim_value or d.dim_param for d in graph_model.graph.input[0].type.tensor_type.shape.dim]

    assert input_dims(fixed) == [1, 5]
    assert all(isinstance(dim, str) for dim in input_dims(dynamic))


@pytest.mark.parametrize("seq_len", [0, 17])
def test_seq_len_outside_the_context_is_refused(tiny_config, tmp_path, seq_len):
    with pytest.raises(ValueError, match="seq_len"):
        export_onnx(build_decoder(tiny_config), tmp_path / "model.onnx", seq_len=seq_len)


@pytest.mark.slow
def test_export_runs_in_eval_mode_and_restores_training(tiny_config, tmp_path):
    model = build_decoder(tiny_config.replace(dropout=0.5)).train()
    path = export_onnx(model, tmp_path / "model.onnx")
    assert model.training
    # Exported in training mode the graph keeps Dropout nodes (onnxruntime skips them, yet they are
    # not the inference graph latency should time).
    assert "Dropout" not in {node.op_type for node in onnx.load(path).graph.node}
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    idx = random_tokens(tiny_config, 8)
    np.testing.assert_allclose(session.run(None, {"idx": idx.numpy()})[0], torch_logits(model, idx), atol=TOLERANCE)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(decoder_configs())
def test_runner_matches_pytorch_on_drawn_configs(config):
    model = build_decoder(config)
    idx = random_tokens(config, config.block_size)
    run = onnx_runner(model, idx, threads=1)
    expected = torch_logits(model, idx)
    for _ in range(2):  # the callable is reusable: latency calls it many times
        np.testing.assert_allclose(run()[0], expected, atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_onnxruntime_latency_times_todays_blocks(modern_config):
    from objectives import LatencyProtocol, measure_latency

    latency = measure_latency(build_decoder(modern_config), LatencyProtocol(backend="onnxruntime", warmup=1, repeats=3))
    assert latency.backend == "onnxruntime" and latency.repeats == 3 and latency.ms > 0


def test_a_missing_runtime_is_one_clear_error(tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    model = build_decoder(tiny_config)
    with pytest.raises(OnnxUnavailable, match=r"pip install -e '\.\[onnx\]' \(onnxruntime is missing\)") as caught:
        onnx_runner(model, random_tokens(tiny_config, 4), threads=1)
    assert isinstance(caught.value, ImportError) and "\n" not in str(caught.value)
