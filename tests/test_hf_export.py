"""`export --hf DIR` and `--onnx FILE` from a run folder: transformers loads the folder and
reproduces decoder-nas's logits and greedy tokens for every layer kind; bad input is one line and
leaves nothing behind. Everything is built locally: the hub is never asked (HF_HUB_OFFLINE)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers loads: it reads this once

import pytest
import tokenizers
import torch

from search_space import BiasConfig, Decoder, DecoderConfig, DecodeState, LayerConfig, Reduction, build_decoder, preset
from studies.errors import StudyError
from studies.export import hf_folder, ministral, remote_code
from studies.export.model_export import export_run
from study_helpers import assert_one_line_error, cli
from trainer.checkpoint import WEIGHTS_FILE, load_checkpoint, save_checkpoint
from trainer.loop import TrainingRecipe
from trainer.tokenizers import ByteTokenizer, CharTokenizer, HuggingFaceTokenizer, Tokenizer

transformers = pytest.importorskip("transformers")  # in the test extra, so CI runs these

TOLERANCE = 1e-4
TEXT = "the rain in spain stays mainly in the plain\n"
PROMPT = "the rain"


def config_of(*layers: LayerConfig, towers: int = 1, tie_head: bool = False, bias: BiasConfig = BiasConfig(),
              vocab_size: int = 14, **model_keys) -> DecoderConfig:
    return DecoderConfig(vocab_size=vocab_size, block_size=32, d_model=16, layers=layers, towers=towers,
                         tie_head=tie_head, bias=bias, **model_keys)


MODERN = {"norm": "rmsnorm", "position": "rope"}
LLAMA = LayerConfig(n_head=4, n_kv_head=2, mlp="swiglu")
LFM2_ATTENTION, LFM2_CONV = replace(LLAMA, qk_norm=True), LayerConfig(mixer="conv", mlp="swiglu")


S, P = LayerConfig(n_head=2), LayerConfig(layout="parallel", n_head=2)
# name: (config, the transformers class it is written as)
LAYER_KINDS = {
    "sequential": (config_of(S, S), "GPT2LMHeadModel"),
    "sequential tied, biases": (config_of(S, S, tie_head=True, bias=BiasConfig(blocks=True)), "GPT2LMHeadModel"),
    "sequential, head counts differ": (config_of(S, LayerConfig(n_head=4)), "DecoderNasForCausalLM"),
    "parallel": (config_of(P, P), "DecoderNasForCausalLM"),
    "parallel tied": (config_of(P, S, tie_head=True), "DecoderNasForCausalLM"),
    "linear reduction": (config_of(LayerConfig(n_head=2, reduction=Reduction("linear", 8)), S),
                         "DecoderNasForCausalLM"),
    "conv reduction k1": (config_of(LayerConfig(n_head=2, reduction=Reduction("conv", 8)), S),
                          "DecoderNasForCausalLM"),
    "conv reduction k3": (config_of(P, LayerConfig(n_head=2, reduction=Reduction("conv", 8, kernel_size=3)), S),
                          "DecoderNasForCausalLM"),
    "2 towers": (config_of(S, P, towers=2), "DecoderNasForCausalLM"),
    "3 towers, conv k3": (config_of(LayerConfig(n_head=2, reduction=Reduction("conv", 8, kernel_size=3)), P,
                                    towers=3, bias=BiasConfig(blocks=True)), "DecoderNasForCausalLM"),
    # today's blocks: the llama and lfm2 shapes as transformers' own classes, any other as custom code
    "llama": (config_of(LLAMA, LLAMA, LLAMA, tie_head=True, **MODERN), "LlamaForCausalLM"),
    "llama untied, biases, theta": (config_of(LLAMA, LLAMA, bias=BiasConfig(blocks=True), norm="rmsnorm",
                                              position="rope", rope_theta=500.0), "LlamaForCausalLM"),
    "llama multi-head, ratio 3": (config_of(*[LayerConfig(n_head=2, mlp="swiglu", mlp_ratio=3)] * 2, **MODERN),
                                  "LlamaForCausalLM"),
    "lfm2": (config_of(LFM2_CONV, LFM2_CONV, LFM2_ATTENTION, LFM2_CONV, tie_head=True, **MODERN), "Lfm2ForCausalLM"),
    "lfm2 untied, conv k4, theta": (config_of(*[replace(LFM2_CONV, conv_kernel=4)] * 2, LFM2_ATTENTION, norm="rmsnorm",
                                              position="rope", rope_theta=1e6), "Lfm2ForCausalLM"),
    "lfm2 convs only": (config_of(LFM2_CONV, LFM2_CONV, **MODERN), "DecoderNasForCausalLM"),  # LFM2 needs attention
    # windows and qk-norm on Llama's stack: Mistral (one window everywhere), Ministral (in some layers), Qwen3
    "window": (config_of(replace(LLAMA, window=8), LLAMA, **MODERN), "MinistralForCausalLM"),
    "window everywhere": (config_of(*[replace(LLAMA, window=5)] * 2, tie_head=True, **MODERN), "MistralForCausalLM"),
    "qk-norm everywhere": (config_of(LFM2_ATTENTION, LFM2_ATTENTION, **MODERN), "Qwen3ForCausalLM"),
    "qk-norm, a window": (config_of(LFM2_ATTENTION, replace(LFM2_ATTENTION, window=6), tie_head=True, **MODERN),
                          "Qwen3ForCausalLM"),
    "two windows": (config_of(replace(LLAMA, window=8), replace(LLAMA, window=4), **MODERN), "DecoderNasForCausalLM"),
    "window of 1": (config_of(replace(LLAMA, window=1), LLAMA, **MODERN), "DecoderNasForCausalLM"),
    "window with biases": (config_of(replace(LLAMA, window=8), LLAMA, bias=BiasConfig(blocks=True), **MODERN),
                           "DecoderNasForCausalLM"),
    "qk-norm with biases": (config_of(LFM2_ATTENTION, LFM2_ATTENTION, bias=BiasConfig(blocks=True), **MODERN),
                            "DecoderNasForCausalLM"),
    "qk-norm in some layers": (config_of(LFM2_ATTENTION, LLAMA, **MODERN), "DecoderNasForCausalLM"),
    "lfm2 with biases": (config_of(LFM2_CONV, LFM2_ATTENTION, bias=BiasConfig(blocks=True), **MODERN),
                         "DecoderNasForCausalLM"),
    "conv mixer beside attention without qk-norm": (config_of(LFM2_CONV, LLAMA, **MODERN), "DecoderNasForCausalLM"),
    "grouped-query gpt": (config_of(LayerConfig(n_head=4, n_kv_head=1), S), "DecoderNasForCausalLM"),
    "rope with gelu": (config_of(S, S, **MODERN), "DecoderNasForCausalLM"),
    "swiglu with learned positions": (config_of(*[replace(LLAMA, n_kv_head=None)] * 2, norm="rmsnorm"),
                                      "DecoderNasForCausalLM"),
    "today's blocks, reductions, towers": (config_of(replace(LFM2_CONV, reduction=Reduction("conv", 8, 3)),
                                                     LayerConfig(n_head=2, n_kv_head=1, window=5, qk_norm=True),
                                                     towers=2, **MODERN), "DecoderNasForCausalLM"),
}


def far_from_initialisation(config: DecoderConfig) -> Decoder:
    """A model whose every tensor (norm gains, biases and the tower mix included) is moved far from its
    initial value, so a weight mapped wrongly changes the logits."""
    torch.manual_seed(0)
    model = build_decoder(config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return model


def run_folder(root: Path, config: DecoderConfig, tokenizer: Tokenizer | None = None, step: int = 3) -> Path:
    """A run folder as `train --out` writes it, its weights far from initialisation."""
    tokenizer = tokenizer or CharTokenizer(TEXT)
    model = far_from_initialisation(config.replace(vocab_size=tokenizer.vocab_size))
    return save_checkpoint(root / "run", model, tokenizer, TrainingRecipe(steps=step or 1),
                           {"step": step, "metrics": {"val_loss": 1.25}, "data_spec": "corpus.txt"})


def load_hf(folder: Path) -> torch.nn.Module:
    remote = any(folder.glob("*.py"))
    return transformers.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=remote).eval()


@pytest.mark.parametrize("config, model_class", LAYER_KINDS.values(), ids=LAYER_KINDS.keys())
def test_transformers_reproduces_the_logits_of_every_layer_kind(config, model_class, tmp_path: Path) -> None:
    run = run_folder(tmp_path, config)
    done = export_run(run, hf=tmp_path / "hf")
    assert done.hf_class == model_class
    model = load_hf(tmp_path / "hf")
    assert type(model).__name__ == model_class
    ours = load_checkpoint(run).model.eval()
    idx = torch.randint(ours.config.vocab_size, (3, ours.config.block_size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(idx).logits, ours(idx), atol=TOLERANCE, rtol=0)


def attention_at(*windows: int | None, qk_norm: bool = False) -> DecoderConfig:
    """Llama's stack at 8 layers with these windows (None: full attention), qk-norm in every layer or none."""
    layer = LayerConfig(n_head=4, n_kv_head=2, mlp="swiglu", qk_norm=qk_norm)
    return config_of(*[replace(layer, window=window) for window in windows], tie_head=True, **MODERN).replace(
        vocab_size=40, d_model=32)


# Every standard class at 8 layers (lfm2: attention at 2, 4 and 6); windows shorter than the prompt
STANDARD = {
    "GPT2LMHeadModel": preset("gpt", vocab_size=40, block_size=32, n_layer=8, n_head=4, d_model=32),
    "LlamaForCausalLM": preset("llama", vocab_size=40, block_size=32, n_layer=8, n_head=4, d_model=32),
    "MistralForCausalLM": attention_at(*[3] * 8),
    "MinistralForCausalLM": attention_at(2, None, 2, 2, None, 2, 2, None),
    "Qwen3ForCausalLM": attention_at(None, 4, None, 4, None, 4, None, None, qk_norm=True),
    "Lfm2ForCausalLM": preset("lfm2", vocab_size=40, block_size=32, n_layer=8, n_head=4, d_model=32),
}


def our_greedy_tokens(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> tuple[list[int], DecodeState]:
    """Greedy tokens through our own cache (DecodeState), and the state after the last token fed."""
    state, tokens = DecodeState(), []
    with torch.no_grad():
        logits = model(prompt, state)
        for _ in range(new_tokens):
            tokens.append(int(logits[0, -1].argmax()))
            if len(tokens) < new_tokens:
                logits = model(torch.tensor([[tokens[-1]]]), state)
    return tokens, state


@pytest.mark.parametrize("model_class, config", STANDARD.items(), ids=STANDARD.keys())
def test_each_standard_class_computes_what_we_compute(model_class: str, config: DecoderConfig) -> None:
    """Our weights copied into the class built from its config: the same logits, and 10 greedy tokens
    through transformers' own cache equal to ours through our cache; a windowed layer's cache holds
    W - 1 keys between steps in theirs, W in ours (the same W keys seen by each step)."""
    family = hf_folder.family_of(config)
    assert family.CLASS == model_class
    ours = far_from_initialisation(config).eval()
    theirs = family.build(transformers, ours).eval()
    assert type(theirs).__name__ == model_class
    idx = torch.randint(40, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours(idx), atol=TOLERANCE, rtol=0)
    prompt = idx[:1, :6]
    out = theirs.generate(prompt, max_new_tokens=10, do_sample=False, return_dict_in_generate=True)
    tokens, state = our_greedy_tokens(ours, prompt, 10)
    assert out.sequences[0, 6:].tolist() == tokens
    for index, block in enumerate(ours.towers[0].layers):  # keys each attention layer's cache holds now
        if block.attn is not None:
            held = state.buffers[block.attn][0].size(2)
            assert held == min(block.attn.window or 32, 6 + 9)
            assert out.past_key_values.layers[index].keys.size(2) == (held - 1 if block.attn.window else held)


def test_transformers_sliding_cache_cannot_hold_a_window_of_one() -> None:
    """Why a window of 1 leaves as custom code: transformers 5.25's sliding cache keeps `[-(W - 1):]` keys,
    for W = 1 all of them, so its greedy tokens leave ours (their forward without a cache agrees). If this
    fails, transformers has fixed it, and `sliding.one_sliding_window` may let a window of 1 through."""
    config = attention_at(1, None, 1, None)
    ours = far_from_initialisation(config).eval()
    theirs = ministral.build(transformers, ours).eval()
    idx = torch.randint(40, (1, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours(idx), atol=TOLERANCE, rtol=0)
    out = theirs.generate(idx[:, :6], max_new_tokens=10, do_sample=False, return_dict_in_generate=True)
    assert out.past_key_values.layers[0].keys.size(2) == 15  # every token, not W - 1 = 0
    assert out.sequences[0, 6:].tolist() != our_greedy_tokens(ours, idx[:, :6], 10)[0]


@pytest.mark.parametrize("kind", ["sequential", "llama", "window everywhere", "window", "qk-norm, a window", "lfm2"])
def test_a_standard_shape_is_a_folder_that_needs_no_custom_code(kind: str, tmp_path: Path) -> None:
    config, model_class = LAYER_KINDS[kind]
    done = cli("export", str(run_folder(tmp_path, config)), "--hf", str(tmp_path / "hf"))
    assert done.code == 0, done.err
    assert f"({model_class}; AutoModelForCausalLM.from_pretrained('{tmp_path / 'hf'}'))" in done.out  # the class it wrote
    assert not list((tmp_path / "hf").glob("*.py"))
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")  # no trust_remote_code
    assert type(model).__name__ == model_class and model.config.tie_word_embeddings == config.tie_head
    if kind == "sequential":
        assert model.config.activation_function == "gelu"
    else:  # RMSNorm's epsilon as ours
        assert getattr(model.config, "rms_norm_eps", getattr(model.config, "norm_eps", None)) == 1e-5
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    (tmp_path / "plain").mkdir()  # the folder is the user's: made as mkdir makes one, not private like a temp dir
    assert (tmp_path / "hf").stat().st_mode == (tmp_path / "plain").stat().st_mode


@pytest.mark.parametrize("kind", ["sequential", "3 towers, conv k3", "llama", "lfm2", "window", "qk-norm, a window"])
def test_greedy_generation_and_the_pipeline_give_decoder_nas_generate_s_tokens(kind: str, tmp_path: Path) -> None:
    run = run_folder(tmp_path, LAYER_KINDS[kind][0])
    export_run(run, hf=tmp_path / "hf")
    generated = cli("generate", str(run), "--prompt", PROMPT, "--max-new-tokens", "20", "--top-k", "1")
    assert generated.code == 0, generated.err
    ours = generated.out.removesuffix("\n")  # print's newline; the sample may end in newlines of its own
    assert len(ours) == len(PROMPT) + 20  # one character per token
    remote = LAYER_KINDS[kind][1] == "DecoderNasForCausalLM"
    model = load_hf(tmp_path / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", trust_remote_code=remote)
    prompt = tokenizer(PROMPT, return_tensors="pt").input_ids
    lengths = []  # what each forward call is fed: with the KV cache, one token after the prompt
    model.register_forward_pre_hook(lambda _module, args, kwargs: lengths.append(kwargs["input_ids"].size(1)),
                                    with_kwargs=True)
    out = model.generate(prompt, max_new_tokens=20, do_sample=False)
    assert tokenizer.decode(out[0]) == ours
    assert lengths == [prompt.size(1)] + [1] * 19
    pipe = transformers.pipeline("text-generation", model=str(tmp_path / "hf"), trust_remote_code=remote)
    assert pipe(PROMPT, max_new_tokens=20, do_sample=False)[0]["generated_text"] == ours


def test_a_custom_folder_tokenizer_loads_without_its_remote_code(tmp_path: Path) -> None:
    """AutoTokenizer asks to trust a custom folder's code (transformers 5 reads config.json through
    AutoConfig first); declined, as a script with no terminal does, it still loads the standard tokenizer."""
    ours = CharTokenizer(TEXT + "\t")
    export_run(run_folder(tmp_path, LAYER_KINDS["parallel"][0], ours), hf=tmp_path / "hf")
    load = (f"import transformers; t = transformers.AutoTokenizer.from_pretrained({str(tmp_path / 'hf')!r}); "
            "print(type(t).__name__, t('the plain', add_special_tokens=False).input_ids)")
    done = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Do you wish to run the custom code?" in done.stdout  # asked, and answered no by the closed stdin
    assert done.stdout.rstrip("\n").endswith(f"TokenizersBackend {ours.encode('the plain')}")  # the same ids
    assert not list((tmp_path / "hf").glob("tokenization_*.py"))  # no tokenizer code of ours to trust


def bpe_tokenizer() -> HuggingFaceTokenizer:
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([TEXT * 4], trainer)
    return HuggingFaceTokenizer(bpe, name="local-bpe")


@pytest.mark.parametrize("make", [lambda: CharTokenizer(TEXT + "\t"), ByteTokenizer, bpe_tokenizer],
                         ids=["char", "byte", "tokenizer.json"])
def test_the_tokenizer_travels_with_the_same_ids(make, tmp_path: Path) -> None:
    ours = make()
    export_run(run_folder(tmp_path, LAYER_KINDS["sequential"][0], ours), hf=tmp_path / "hf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "the plain\n\tin  spain" if isinstance(ours, CharTokenizer) else "Ünïcode\n\t rain  ☃"
    ids = ours.encode(text)
    assert theirs(text, add_special_tokens=False).input_ids == ids
    assert theirs.decode(ids) == ours.decode(ids) == text


def test_the_model_card_says_what_the_model_is_and_where_it_came_from(tmp_path: Path) -> None:
    export_run(run_folder(tmp_path, LAYER_KINDS["2 towers"][0]), hf=tmp_path / "hf")
    card = (tmp_path / "hf" / "README.md").read_text()
    for fact in ("d16 2L[S2 P2] x2 towers", "FLOPs per token", "parameters", "1.2500", "corpus.txt",
                 "trust_remote_code=True"):
        assert fact in card, fact
    assert (tmp_path / "hf" / "generation_config.json").is_file()


@pytest.mark.slow
def test_the_custom_folder_loads_without_decoder_nas(tmp_path: Path) -> None:
    run = run_folder(tmp_path, LAYER_KINDS["3 towers, conv k3"][0])
    export_run(run, hf=tmp_path / "hf")
    idx = torch.randint(14, (2, 32), generator=torch.Generator().manual_seed(2))
    torch.save({"idx": idx, "logits": load_checkpoint(run).model.eval()(idx).detach()}, tmp_path / "expected.pt")
    # A fresh interpreter where importing any decoder-nas package fails, as on a machine without it.
    script = f"""
import sys
for name in ("search_space", "trainer", "objectives", "studies"):
    sys.modules[name] = None
import torch, transformers
expected = torch.load({str(tmp_path / "expected.pt")!r})
model = transformers.AutoModelForCausalLM.from_pretrained({str(tmp_path / "hf")!r}, trust_remote_code=True)
logits = model.eval()(expected["idx"]).logits
print((logits - expected["logits"]).abs().max().item())
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < TOLERANCE


def test_onnx_from_a_run_folder_has_dynamic_batch_and_matches_pytorch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    run = run_folder(tmp_path, LAYER_KINDS["conv reduction k3"][0])
    done = cli("export", str(run), "--onnx", str(tmp_path / "model.onnx"))
    assert done.code == 0, done.err
    assert "trained weights; ONNX Runtime's logits within" in done.out
    model = load_checkpoint(run).model.eval()
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        idx = torch.randint(model.config.vocab_size, (batch, 32), generator=torch.Generator().manual_seed(batch))
        (logits,) = session.run(None, {"idx": idx.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), model(idx).detach(), atol=TOLERANCE, rtol=0)


def corrupt(run: Path) -> None:
    weights = run / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])


def tampered(run: Path) -> None:
    weights = bytearray((run / WEIGHTS_FILE).read_bytes())
    weights[-3] ^= 0x01  # one bit of one weight: the file still loads
    (run / WEIGHTS_FILE).write_bytes(bytes(weights))


def missing(run: Path) -> None:
    (run / WEIGHTS_FILE).unlink()


def other_shape(run: Path) -> None:
    other = run_folder(run.parent / "other", config_of(S, S, towers=2))
    (run / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())


def not_a_run(run: Path) -> None:
    (run / "run.json").unlink()


@pytest.mark.parametrize("damage, fragment", [(not_a_run, "not a complete decoder-nas checkpoint"),
                                              (missing, "model.safetensors is missing"),
                                              (corrupt, "damaged"), (tampered, "changed since it was written"),
                                              (other_shape, "damaged, or not the weights")],
                         ids=["not a run folder", "missing weights", "truncated weights", "tampered weights",
                              "another model's weights"])
def test_a_bad_run_folder_is_one_line_and_writes_nothing(damage, fragment, tmp_path: Path) -> None:
    run = run_folder(tmp_path, LAYER_KINDS["parallel"][0])
    damage(run)
    result = cli("export", str(run), "--hf", str(tmp_path / "hf"), "--onnx", str(tmp_path / "m.onnx"))
    assert_one_line_error(result, "export", fragment)
    expected = ["other", "run"] if damage is other_shape else ["run"]
    assert sorted(path.name for path in tmp_path.iterdir()) == expected


def test_an_existing_folder_with_files_is_refused_and_kept(tmp_path: Path) -> None:
    run = run_folder(tmp_path, LAYER_KINDS["parallel"][0])
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "mine.txt").write_text("keep me")
    result = cli("export", str(run), "--hf", str(tmp_path / "hf"), "--onnx", str(tmp_path / "m.onnx"))
    assert_one_line_error(result, "export", "--hf", "not an empty folder")
    assert [p.name for p in (tmp_path / "hf").iterdir()] == ["mine.txt"] and not (tmp_path / "m.onnx").exists()
    (tmp_path / "empty").mkdir()  # an empty folder is fine: nothing in it can be lost
    done = cli("export", str(run), "--hf", str(tmp_path / "empty"))
    assert done.code == 0 and "(DecoderNasForCausalLM; " in done.out and "trust_remote_code=True))" in done.out
    assert (tmp_path / "empty" / "model.safetensors").is_file()


def test_a_failed_export_leaves_no_partial_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_folder(tmp_path, LAYER_KINDS["parallel"][0])

    def disk_full(*args: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hf_folder, "model_card", disk_full)
    assert_one_line_error(cli("export", str(run), "--hf", str(tmp_path / "hf")), "export", "No space left")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_an_untrained_run_folder_is_refused(tmp_path: Path) -> None:
    run = run_folder(tmp_path, LAYER_KINDS["parallel"][0], step=0)
    with pytest.raises(StudyError, match="no trained weights.*decoder-nas train"):
        export_run(run, hf=tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_copied_model_code_may_not_import_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "leaky.py"
    module.write_text("from trainer.tokenizers import ByteTokenizer\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import leaky

    with pytest.raises(StudyError, match="imports trainer.tokenizers"):
        remote_code.remote_source(leaky)
    assert "from .architecture import" in remote_code.remote_source(remote_code.search_space.model)


@pytest.mark.slow
def test_an_onnx_graph_that_disagrees_with_pytorch_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    import objectives.onnx

    run = run_folder(tmp_path, LAYER_KINDS["parallel"][0])
    monkeypatch.setattr(objectives.onnx, "onnx_max_difference", lambda *args: 0.5)
    assert_one_line_error(cli("export", str(run), "--onnx", str(tmp_path / "m.onnx")), "export", "differ", "0.5")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
