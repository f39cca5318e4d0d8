"""`export --hf DIR`: a trained decoder as a folder that Hugging Face `transformers` loads.

A plain sequential GPT (one tower, sequential blocks, no reductions, one head count and MLP width)
is written as GPT2LMHeadModel, loadable with no custom code. Every other shape is written as
DecoderNasForCausalLM with `auto_map`: the folder carries hf_remote/'s small adapter and the
project's own search_space/model.py and config.py, copied from the installed package at export
time, so what the folder runs is what decoder-nas trained. docs/export.md says why no other
standard class fits.

The folder is staged beside DIR and renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import tokenizers
import torch
from safetensors.torch import save_file

import search_space.config
import search_space.model
from search_space import Decoder, DecoderConfig, config_to_dict, summarize
from search_space.config import mlp_hidden
from trainer.tokenizers import HF_TOKENIZER_FILE, ByteTokenizer, CharTokenizer, Tokenizer

from ..errors import ArgumentError, StudyError

INSTALL_HINT = "--hf needs transformers: pip install -e '.[hf]'"
REMOTE_CODE = Path(__file__).with_name("hf_remote")
# What the copied project modules are called inside the folder, and the one import between them.
COPIED_MODULES = {"architecture.py": search_space.config, "decoder.py": search_space.model}
PROJECT_IMPORT = re.compile(r"^from \.config import ", re.MULTILINE)
IMPORTED = re.compile(r"^\s*(?:from|import)\s+([\w.]+)", re.MULTILINE)
PROJECT_PACKAGES = ("search_space", "trainer", "objectives", "studies")
LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, which search_space.model uses


def require_transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise StudyError(INSTALL_HINT) from None


def check_target(directory: Path) -> None:
    """Refuse a DIR that would lose files, before any work is done."""
    if directory.is_file() or (directory.is_dir() and any(directory.iterdir())):
        raise ArgumentError("hf", directory, "exists and is not an empty folder; give a new folder")
    if not directory.parent.is_dir():
        raise ArgumentError("hf", directory, f"the folder {directory.parent} does not exist")


def is_plain_gpt(config: DecoderConfig) -> bool:
    """True when GPT2LMHeadModel computes exactly what this config does."""
    first = config.layers[0]
    return config.towers == 1 and all(
        layer.layout == "sequential" and layer.reduction is None
        and layer.n_head == first.n_head and layer.mlp_ratio == first.mlp_ratio
        for layer in config.layers
    )


def write_hf_folder(model: Decoder, tokenizer: Tokenizer, directory: Path, card: dict[str, Any]) -> str:
    """Write model, tokenizer, generation config and model card to `directory`; returns the model class."""
    transformers = require_transformers()
    check_target(directory)
    config = model.config
    with _staged(directory) as folder:
        if is_plain_gpt(config):
            model_class = _write_gpt2(transformers, model, folder)
        else:
            model_class = _write_custom(model, folder)
        fast = transformers.PreTrainedTokenizerFast(tokenizer_object=hf_tokenizer(tokenizer),
                                                    clean_up_tokenization_spaces=False,
                                                    model_max_length=config.block_size)
        fast.save_pretrained(folder)
        # No end-of-text token exists in a char or byte vocabulary: generation runs to its length.
        # No pad token either: generate() would take every id equal to it for padding.
        transformers.GenerationConfig(bos_token_id=None, eos_token_id=None, pad_token_id=None,
                                      do_sample=False).save_pretrained(folder)
        (folder / "README.md").write_text(model_card(model, model_class, card), encoding="utf-8")
    return model_class


def hf_tokenizer(tokenizer: Tokenizer) -> tokenizers.Tokenizer:
    """The same ids for the same text, as a `tokenizers.Tokenizer` (what PreTrainedTokenizerFast wraps)."""
    if isinstance(tokenizer, CharTokenizer):
        vocab = {char: index for index, char in enumerate(tokenizer.chars)}
        fast = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token=None))
        fast.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex(r"[\s\S]"), behavior="isolated")
        fast.decoder = tokenizers.decoders.Fuse()
        return fast
    if isinstance(tokenizer, ByteTokenizer):
        # GPT-2's byte-to-character table, ids in byte order and no merges: one token per UTF-8 byte.
        vocab = {char: byte for byte, char in enumerate(_byte_characters())}
        fast = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, []))
        fast.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        fast.decoder = tokenizers.decoders.ByteLevel()
        return fast
    # Any other tokenizer (BPE, a hub tokenizer) saves a tokenizer.json, which is the fast tokenizer itself.
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save(Path(scratch))
        saved = Path(scratch) / HF_TOKENIZER_FILE
        if not saved.is_file():
            raise StudyError(f"the {tokenizer.name!r} tokenizer has no tokenizer.json form to travel with a Hugging Face export")
        return tokenizers.Tokenizer.from_file(str(saved))


def model_card(model: Decoder, model_class: str, card: dict[str, Any]) -> str:
    from objectives import count_flops, count_parameters

    config = model.config
    remote = model_class != "GPT2LMHeadModel"
    load = "AutoModelForCausalLM.from_pretrained(DIR" + (", trust_remote_code=True)" if remote else ")")
    facts = {"architecture": f"`{summarize(config)}`", "class": f"`{model_class}`",
             "parameters": f"{count_parameters(model).total:,}",
             "FLOPs per token": f"{count_flops(config):,}", "context": f"{config.block_size} tokens",
             **{key: f"{value}" for key, value in card.items() if value is not None}}
    rows = "\n".join(f"| {key} | {value} |" for key, value in facts.items())
    needs = "transformers, torch and einops" if remote else "transformers and torch"
    return (f"# {summarize(config)}\n\nA decoder-only language model found and trained with decoder-nas.\n\n"
            f"| | |\n| --- | --- |\n{rows}\n\n"
            f"Load it with {needs}:\n\n```python\nfrom transformers import AutoModelForCausalLM, pipeline\n"
            f"model = {load}\n```\n\n"
            + ("The modeling code in this folder (modeling_decoder_nas.py, decoder.py, architecture.py) is "
               "decoder-nas's own, copied at export; it takes unpadded input.\n" if remote else ""))


def _write_gpt2(transformers: Any, model: Decoder, folder: Path) -> str:
    config = model.config
    layer = config.layers[0]
    gpt2_config = transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.d_model,
        n_layer=len(config.layers), n_head=layer.n_head, n_inner=mlp_hidden(config.d_model, layer.mlp_ratio),
        activation_function="gelu",  # exact (erf) GELU, as F.gelu; GPT-2's own is the tanh approximation
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        layer_norm_epsilon=LAYER_NORM_EPS, tie_word_embeddings=config.tie_head,
        bos_token_id=None, eos_token_id=None,
    )
    gpt2 = transformers.GPT2LMHeadModel(gpt2_config)
    gpt2.load_state_dict(gpt2_weights(model))  # strict: every GPT-2 weight comes from ours
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a bar for writing one small file is noise
    try:
        gpt2.save_pretrained(folder, safe_serialization=True)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return "GPT2LMHeadModel"


def gpt2_weights(model: Decoder) -> dict[str, torch.Tensor]:
    """Our names and layouts as GPT-2's: its Conv1D keeps weights [in, out]; where we have no bias it has zeros."""
    ours = model.state_dict()

    def bias(name: str, width: int) -> torch.Tensor:
        return ours.get(name, torch.zeros(width))

    weights = {"transformer.wte.weight": ours["tok_emb.weight"], "transformer.wpe.weight": ours["pos_emb.weight"],
               "transformer.ln_f.weight": ours["ln_f.weight"],
               "transformer.ln_f.bias": bias("ln_f.bias", model.config.d_model),
               "lm_head.weight": ours["head.weight"]}
    for index in range(len(model.config.layers)):
        src, dst = f"towers.0.layers.{index}.", f"transformer.h.{index}."
        for ours_name, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                                  ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
            weight = ours[f"{src}{ours_name}.weight"]
            weights[f"{dst}{theirs}.weight"] = weight.t().contiguous()
            weights[f"{dst}{theirs}.bias"] = bias(f"{src}{ours_name}.bias", weight.size(0))
        for norm in ("ln_1", "ln_2"):
            weights[f"{dst}{norm}.weight"] = ours[f"{src}{norm}.weight"]
            weights[f"{dst}{norm}.bias"] = bias(f"{src}{norm}.bias", model.config.d_model)
    return weights


def _write_custom(model: Decoder, folder: Path) -> str:
    config = model.config
    for template in sorted(REMOTE_CODE.glob("*.py")):
        shutil.copyfile(template, folder / template.name)
    for name, module in COPIED_MODULES.items():
        (folder / name).write_text(remote_source(module), encoding="utf-8")
    architecture = config_to_dict(config.replace(provenance={}))
    hf_config = {
        "architectures": ["DecoderNasForCausalLM"], "model_type": "decoder_nas",
        "auto_map": {"AutoConfig": "configuration_decoder_nas.DecoderNasConfig",
                     "AutoModelForCausalLM": "modeling_decoder_nas.DecoderNasForCausalLM"},
        "architecture": architecture, "vocab_size": config.vocab_size, "hidden_size": config.d_model,
        "max_position_embeddings": config.block_size, "tie_word_embeddings": config.tie_head,
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None, "use_cache": True, "dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
    # A tied head is one tensor under two names: safetensors keeps it once (transformers re-ties it).
    state = {f"decoder.{name}": tensor.contiguous() for name, tensor in model.state_dict().items()
             if not (config.tie_head and name == "head.weight")}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return "DecoderNasForCausalLM"


def remote_source(module: Any) -> str:
    """A project module's source as a file of the exported folder: its one project import made relative
    to the folder. Any other import of the project would break loading without decoder-nas: refused."""
    source = PROJECT_IMPORT.sub("from .architecture import ", inspect.getsource(module))
    for imported in IMPORTED.findall(source):
        if imported != ".architecture" and (imported.startswith(".") or imported.split(".")[0] in PROJECT_PACKAGES):
            raise StudyError(f"{module.__name__} imports {imported}; an exported Hugging Face folder could not load "
                             "it without decoder-nas")
    return f'# Copied by `decoder-nas export --hf` from {module.__name__}; edit it there.\n{source}'


@contextlib.contextmanager
def _staged(directory: Path) -> Iterator[Path]:
    """A scratch folder beside `directory`, renamed onto it when the body succeeds, removed otherwise."""
    # Not tempfile.mkdtemp: its folder is private (0700), and this one becomes the user's.
    folder = directory.parent / f".{directory.name}.{secrets.token_hex(4)}.partial"
    try:
        folder.mkdir()
    except OSError as exc:  # a read-only folder
        raise ArgumentError("hf", directory, f"cannot write ({exc.strerror or exc})") from None
    try:
        yield folder
        if directory.is_dir():
            directory.rmdir()  # empty (checked): rename needs it gone or empty, and empty is not portable
        os.rename(folder, directory)
    except OSError as exc:  # a full disk
        shutil.rmtree(folder, ignore_errors=True)
        raise ArgumentError("hf", directory, f"cannot write ({exc.strerror or exc}); nothing written") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _byte_characters() -> list[str]:
    """GPT-2's printable stand-in for each byte value 0..255 (bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(byte) if byte in printable else chr(next(extra)) for byte in range(256)]
