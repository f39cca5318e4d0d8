"""A decoder-nas model as a transformers PreTrainedModel, written into the folder by `decoder-nas
export --hf`. decoder.py and architecture.py beside it are decoder-nas's own model and config code,
copied at export time, so loading needs transformers, torch and einops but not decoder-nas.

Generation keeps decoder-nas's cache (DecodeState: attention keys and values, the causal convs'
last inputs), so each new token costs one position. Inputs are unpadded: an attention mask with
zeros is refused rather than silently ignored.
"""

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .architecture import config_from_dict
from .configuration_decoder_nas import DecoderNasConfig
from .decoder import Decoder, DecodeState

# transformers 5 renamed the output's past_key_values to cache; write whichever this version has.
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class DecoderNasForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = DecoderNasConfig
    base_model_prefix = "decoder"
    _tied_weights_keys = {"decoder.head.weight": "decoder.tok_emb.weight"}

    def __init__(self, config: DecoderNasConfig):
        super().__init__(config)
        self.decoder = Decoder(config_from_dict(config.architecture))
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        pass  # Decoder initialises itself as decoder-nas trains it; loading then overwrites every weight

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate() keeps the DecodeState this forward returns

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.decoder.tok_emb

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.decoder.head

    def forward(self, input_ids, attention_mask=None, cache=None, past_key_values=None, use_cache=None,
                labels=None, **kwargs):
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("decoder-nas models take unpadded input: attention_mask must be all ones")
        state = cache if cache is not None else past_key_values
        if use_cache or (use_cache is None and state is not None):
            state = state if isinstance(state, DecodeState) else DecodeState()
        else:
            state = None
        logits = self.decoder(input_ids, state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_FIELD: state})

    def prepare_inputs_for_generation(self, input_ids, cache=None, past_key_values=None, attention_mask=None,
                                      use_cache=True, **kwargs):
        state = cache if cache is not None else past_key_values
        if isinstance(state, DecodeState) and state.position:
            input_ids = input_ids[:, state.position:]  # the cache holds the rest
        return {"input_ids": input_ids, "cache": state, "attention_mask": attention_mask, "use_cache": use_cache}
