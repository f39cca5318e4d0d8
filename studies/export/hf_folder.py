"""`export --hf DIR`: a trained decoder as a folder that Hugging Face `transformers` loads.

A shape that a standard transformers class computes exactly leaves as that class, loadable with no
custom code: one module per class (STANDARD_FAMILIES), each saying which configs it `fits` and how to
`build` the class with our weights. Every other shape leaves with its own code
(remote_code.py). docs/export.md says which shape maps where, and why.

The folder is written where the export stages it (outputs.py) and moved into place with the
export's other outputs, so a failed export leaves nothing behind. Every file in it gets the mode a
new file gets here (0644 under the usual umask): safetensors writes its file private (0600).
"""

from __future__ import annotations

import importlib
import re
import secrets
import stat
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import tokenizers

from search_space import Decoder, DecoderConfig, summarize
from trainer.tokenizers import HF_TOKENIZER_FILE, ByteTokenizer, CharTokenizer, Tokenizer

from ..errors import ArgumentError, StudyError
from . import gpt2, lfm2, llama, ministral, mistral, qwen3, remote_code

INSTALL_HINT = "--hf needs transformers: pip install -e '.[hf]'"
# The standard classes, tried in order; a config none of them fits leaves as remote code.
STANDARD_FAMILIES: tuple[ModuleType, ...] = (gpt2, llama, mistral, ministral, qwen3, lfm2)


def require_transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise StudyError(INSTALL_HINT) from None


def check_target(directory: Path) -> None:
    """Refuse a DIR that would lose files, before any work is done (outputs.check_places checks the name)."""
    if directory.exists() and not directory.is_dir():
        raise ArgumentError("hf", directory, "exists and is not a folder; give a new folder")
    if directory.is_dir() and any(directory.iterdir()):
        raise ArgumentError("hf", directory, "exists and is not an empty folder; give a new folder")


def write_hf_folder(model: Decoder, tokenizer: Tokenizer, folder: Path, card: dict[str, Any]) -> str:
    """Write model, tokenizer, generation config and model card to the new folder `folder`; returns
    the model class."""
    transformers = require_transformers()
    config = model.config
    family = family_of(config)
    folder.mkdir()
    if family is remote_code:
        remote_code.write(model, folder)
    else:
        _save_quietly(family.build(transformers, model), transformers, folder)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=hf_tokenizer(tokenizer),
                                                clean_up_tokenization_spaces=False,
                                                model_max_length=config.block_size)
    fast.save_pretrained(folder)
    # No end-of-text token exists in a char or byte vocabulary: generation runs to its length.
    # No pad token either: generate() would take every id equal to it for padding.
    transformers.GenerationConfig(bos_token_id=None, eos_token_id=None, pad_token_id=None,
                                  do_sample=False).save_pretrained(folder)
    (folder / "README.md").write_text(model_card(model, family, card), encoding="utf-8")
    _usual_modes(folder)
    return family.CLASS


def _usual_modes(folder: Path) -> None:
    """Give every file in `folder` the mode of a file created here without asking for one."""
    probe = folder / f".mode-{secrets.token_hex(4)}"
    probe.touch()
    mode = stat.S_IMODE(probe.stat().st_mode)
    probe.unlink()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def family_of(config: DecoderConfig) -> ModuleType:
    """The module that writes `config`: the first standard class that computes it exactly, else remote code."""
    return next((family for family in STANDARD_FAMILIES if family.fits(config)), remote_code)


def _save_quietly(hf_model: Any, transformers: Any, folder: Path) -> None:
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a bar for writing one small file is noise
    try:
        hf_model.save_pretrained(folder, safe_serialization=True)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


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


def model_card(model: Decoder, family: ModuleType, card: dict[str, Any]) -> str:
    from objectives import count_flops, count_parameters

    config = model.config
    remote = family is remote_code
    trust = ", trust_remote_code=True" if remote else ""  # the tokenizer too: transformers reads the config first
    facts = {"architecture": f"`{summarize(config)}`", "class": f"`{family.CLASS}`",
             "parameters": f"{count_parameters(model).total:,}",
             "FLOPs per token": f"{count_flops(config):,}", "context": f"{config.block_size} tokens",
             **{key: _cell(value) for key, value in card.items() if value is not None}}
    rows = "\n".join(f"| {key} | {value} |" for key, value in facts.items())
    needs = "transformers, torch and einops" if remote else "transformers and torch"
    return (f"# {summarize(config)}\n\nA decoder-only language model found and trained with decoder-nas.\n\n"
            f"| | |\n| --- | --- |\n{rows}\n\n"
            f"Load it with {needs}:\n\n```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"model = AutoModelForCausalLM.from_pretrained(DIR{trust})\n"
            f"tokenizer = AutoTokenizer.from_pretrained(DIR{trust})\n```\n\n"
            + ("The modeling code in this folder (modeling_decoder_nas.py, decoder.py, architecture.py) is "
               "decoder-nas's own, copied at export; it takes unpadded input.\n" if remote else ""))


def _cell(value: Any) -> str:
    """`value` (a study name, a corpus path: anyone's text) as one markdown table cell showing it as
    written: a code span, so no link, emphasis or HTML inside works; `|` escaped, which would start a
    column; line breaks and other control characters spelt out (`\\n`), which would end the row."""
    text = "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                   for char in str(value)).replace("|", "\\|")
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _byte_characters() -> list[str]:
    """GPT-2's printable stand-in for each byte value 0..255 (bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(byte) if byte in printable else chr(next(extra)) for byte in range(256)]
