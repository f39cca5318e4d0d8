"""The Hugging Face config of a decoder-nas model, written into the folder by `decoder-nas export --hf`.

`architecture` is the decoder-nas config as plain data (architecture.py's config_from_dict reads it).
"""

from transformers import PretrainedConfig


class DecoderNasConfig(PretrainedConfig):
    model_type = "decoder_nas"

    def __init__(self, architecture: dict | None = None, **kwargs):
        self.architecture = architecture or {}
        super().__init__(**kwargs)
