"""Mega encoder-decoder models for translation (``--arch mega_wmt_en_de*``) on fairseq's own
``translation`` task: a bidirectional :class:`MegaEncoder` and a causal :class:`MegaDecoder` whose
layers attend over the encoder output through gated cross-attention."""

import os
from dataclasses import dataclass, field
from typing import Dict, Optional

from fairseq import hub_utils
from fairseq.models import FairseqEncoderDecoderModel, register_model
from fairseq.utils import safe_getattr
from omegaconf import II

from ..hub import FromPretrained
from ..checkpoint_errors import check_dictionaries, check_model_fits_task
from ..modules import MegaStack
from .mega_config import (SHARED_COLUMNS, Preset, PresetTable, TokenEmbeddingOptions, derived_fields, layer_config,
                          layer_defaults, layer_options_config, size_columns)
from .mega_decoder import MegaDecoder, build_embedding_table, build_output_layer, build_token_embedding
from .mega_encoder import MegaEncoder


def _both(**sizes):
    """The same sizes for the encoder and the decoder stack."""
    return {f"{prefix}_{name}": value for prefix in ("encoder", "decoder") for name, value in sizes.items()}


# The family's base preset (--arch mega): the layer defaults; the others build on it.
BASE = layer_defaults(["encoder", "decoder"])

PRESETS = {
    "mega": Preset(None, BASE, "the official base differs: EMA truncation 1024 (its WMT recipe passes 0: none)"),
    "mega_wmt_en_de": Preset(
        "mega", dict(dropout=0.15, attention_dropout=0.1, hidden_dropout=0.1, activation_dropout=0.1),
        "WMT16 En-De (paper: 29.18 tokenized BLEU, 28.47 SacreBLEU on newstest2014)"),
    "mega_wmt_en_de_big": Preset(
        "mega_wmt_en_de", dict(_both(embed_dim=1024, hidden_dim=2048, z_dim=256), dropout=0.3),
        "dropout 0.3 as the official big preset"),
    "mega_mt_tiny": Preset("mega", _both(layers=2, embed_dim=32, hidden_dim=64, z_dim=16, n_dim=4),
                           "tests and CPU demos"),
}


@dataclass
class MegaTranslationConfig(layer_options_config("MegaTranslationLayerOptions", ["encoder", "decoder"], BASE,
                                                 "mega", TokenEmbeddingOptions)):
    share_all_embeddings: bool = field(
        default=False, metadata={"help": "share the encoder, decoder and output embeddings (needs a joined "
                                         "dictionary, fairseq-preprocess --joined-dictionary, and equal dims)"})
    alignment_layer: int = field(
        default=-1, metadata={"help": "the decoder layer (0-based; -1: the last) whose cross-attention weights are "
                                      "the alignments of --print-alignment and --replace-unk, and those that "
                                      "--load-alignments with --criterion label_smoothed_cross_entropy_with_alignment "
                                      "supervises"})
    max_source_positions: Optional[int] = II("task.max_source_positions")
    max_target_positions: Optional[int] = II("task.max_target_positions")


MT_PRESETS = PresetTable("mega", MegaTranslationConfig, PRESETS, derived=derived_fields(["encoder", "decoder"]))


def preset_table() -> str:
    """The table of named translation architectures in docs/translation.md (kept equal to it by a test)."""
    return MT_PRESETS.markdown([("layers (enc+dec)", lambda v: f"{v['encoder_layers']}+{v['decoder_layers']}"),
                                *size_columns("encoder"), *SHARED_COLUMNS])


def dictionary_files(task) -> Dict[str, str]:
    """The files the task read its source ("encoder") and target ("decoder") dictionaries from,
    where its config says: ``--source-dict`` / ``--target-dict``, or DATA/dict.LANG.txt for
    ``--source-lang`` / ``--target-lang`` (fairseq's ``translation``), else for the languages of
    the first pair (``translation_multi_simple_epoch`` while training; its dictionaries are the
    file's symbols plus language tokens). A side the config does not name is left out."""
    config = safe_getattr(task, "cfg", None) or safe_getattr(task, "args", None)
    data = str(safe_getattr(config, "data", "") or "").split(os.pathsep)[0]
    files = {}
    for side, which in (("encoder", "source"), ("decoder", "target")):
        languages = safe_getattr(task, f"{which}_langs", None) or [None]
        language = safe_getattr(config, f"{which}_lang", None) or languages[0]
        named = safe_getattr(config, f"{which}_dict", None)
        if named or (data and language):
            files[side] = named or os.path.join(data, f"dict.{language}.txt")
    return files


@register_model("mega", dataclass=MegaTranslationConfig)
class MegaTranslationModel(FromPretrained, FairseqEncoderDecoderModel):
    """Mega encoder-decoder (the official ``mega`` model)."""

    hub_interface = hub_utils.GeneratorHubInterface  # from_pretrained: .translate(), .generate()

    @classmethod
    def build_model(cls, cfg, task):
        check_model_fits_task(cfg, task, "mega")
        MT_PRESETS.apply("mega", cfg)  # configs of older checkpoints may lack fields
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        max_source = safe_getattr(cfg, "max_source_positions", None) or 1024
        max_target = safe_getattr(cfg, "max_target_positions", None) or 1024
        encoder_layers = layer_config(cfg, "encoder", max_source)
        decoder_layers = layer_config(cfg, "decoder", max_target, max_source_positions=max_source)
        encoder_table = build_embedding_table(src_dict, cfg.encoder_embed_dim)
        if cfg.share_all_embeddings:
            if src_dict != tgt_dict:
                raise ValueError("--share-all-embeddings needs a joined dictionary (fairseq-preprocess "
                                 "--joined-dictionary): the source and target dictionaries differ")
            if cfg.encoder_embed_dim != cfg.decoder_embed_dim:
                raise ValueError(f"--share-all-embeddings needs --encoder-embed-dim ({cfg.encoder_embed_dim}) equal to "
                                 f"--decoder-embed-dim ({cfg.decoder_embed_dim})")
            decoder_table = encoder_table
            cfg.share_decoder_input_output_embed = True
        else:
            decoder_table = build_embedding_table(tgt_dict, cfg.decoder_embed_dim)

        def embedding(table, dim):
            return build_token_embedding(cfg, table, dim, dim)

        encoder = MegaEncoder(src_dict, embedding(encoder_table, cfg.encoder_embed_dim),
                              MegaStack(encoder_layers, causal=False), padding_idx=src_dict.pad(),
                              max_source_positions=max_source)
        projection, adaptive_softmax = build_output_layer(cfg, tgt_dict, decoder_table, cfg.decoder_embed_dim)
        left_pad_target = bool(safe_getattr(safe_getattr(task, "cfg", None), "left_pad_target", False))
        decoder = MegaDecoder(tgt_dict, embedding(decoder_table, cfg.decoder_embed_dim),
                              MegaStack(decoder_layers, causal=True, cross_attention=True),
                              output_projection=projection, adaptive_softmax=adaptive_softmax,
                              max_target_positions=max_target, alignment_layer=cfg.alignment_layer,
                              left_pad=left_pad_target)
        # --load-alignments: alignment-supervised training reads the weights at every step
        decoder.need_attn = bool(safe_getattr(safe_getattr(task, "cfg", None), "load_alignments", False))
        model = cls(encoder, decoder)
        model.dictionary_files = dictionary_files(task)
        return model

    def prepare_for_inference_(self, cfg):
        """Refuses --replace-unk without --print-alignment (hard) before generating: fairseq
        computes the alignments it reads only then, and would fail at the first <unk>."""
        generation = safe_getattr(cfg, "generation", None)
        if safe_getattr(generation, "replace_unk", None) is not None \
                and str(safe_getattr(generation, "print_alignment", None)) != "hard":
            raise ValueError("--replace-unk copies the source word aligned with each <unk> and needs the "
                             "alignments of --print-alignment (hard), which fairseq computes only then")
        super().prepare_for_inference_(cfg)

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """A checkpoint trained with another dictionary is named as such, not as a size mismatch."""
        check_dictionaries(self, state_dict, getattr(self, "dictionary_files", {}))
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)


MT_PRESETS.register()
