"""DecoderNasForCausalLM: every shape no transformers class computes exactly leaves with its own code.

The folder carries hf_remote/'s small adapter and the project's own search_space/model.py and
config.py, copied from the installed package at export time, so what the folder runs is what
decoder-nas trained (docs/export.md).
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

import search_space.config
import search_space.model
from search_space import Decoder, config_to_dict

from ..errors import StudyError

CLASS = "DecoderNasForCausalLM"
REMOTE_CODE = Path(__file__).with_name("hf_remote")
# What the copied project modules are called inside the folder, and the one import between them.
COPIED_MODULES = {"architecture.py": search_space.config, "decoder.py": search_space.model}
PROJECT_IMPORT = re.compile(r"^from \.config import ", re.MULTILINE)
IMPORTED = re.compile(r"^\s*(?:from|import)\s+([\w.]+)", re.MULTILINE)
PROJECT_PACKAGES = ("search_space", "trainer", "objectives", "studies")


def write(model: Decoder, folder: Path) -> None:
    """The adapter, the copied project modules, config.json with `auto_map`, and the weights."""
    config = model.config
    for template in sorted(REMOTE_CODE.glob("*.py")):
        shutil.copyfile(template, folder / template.name)
    for name, module in COPIED_MODULES.items():
        (folder / name).write_text(remote_source(module), encoding="utf-8")
    architecture = config_to_dict(config.replace(provenance={}))
    hf_config = {
        "architectures": [CLASS], "model_type": "decoder_nas",
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


def remote_source(module: Any) -> str:
    """A project module's source as a file of the exported folder: its one project import made relative
    to the folder. Any other import of the project would break loading without decoder-nas: refused."""
    source = PROJECT_IMPORT.sub("from .architecture import ", inspect.getsource(module))
    for imported in IMPORTED.findall(source):
        if imported != ".architecture" and (imported.startswith(".") or imported.split(".")[0] in PROJECT_PACKAGES):
            raise StudyError(f"{module.__name__} imports {imported}; an exported Hugging Face folder could not load "
                             "it without decoder-nas")
    return f'# Copied by `decoder-nas export --hf` from {module.__name__}; edit it there.\n{source}'
