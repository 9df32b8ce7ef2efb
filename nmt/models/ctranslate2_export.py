"""Export of a Transformer checkpoint to CTranslate2 (an inference engine for Transformer models, in C++), so
that a model trained here can be served there; in float32 its greedy translations are ours, token for token.

Our Transformer maps onto CTranslate2's `TransformerSpec` one weight at a time:

- the sub-layers keep their layout: self-attention's fused query/key/value projection and cross-attention's
  fused key/value projection are stacked as CTranslate2 fuses them; each residual's LayerNorm goes before the
  sub-layer (pre-norm) or after the residual sum (post-norm), and pre-norm's closing LayerNorm of each stack
  becomes the stack's final norm; the FFN is ReLU with biases (Vaswani et al. 2017, Section 3.3);
- the embeddings are multiplied by sqrt(d_model) (Section 3.4); the added positions are written out as a table
  of `max_positions` rows (our sinusoids interleave sin and cos, and CTranslate2's built-in ones would not,
  so the table is always explicit; learned positions go with their scale; `none` is a table of zeros); rotary
  positions rotate adjacent pairs of self-attention's queries and keys (CTranslate2's interleaved rotary),
  never cross-attention's;
- unscaled attention (`scale_attention: false`) sets the queries' scale to 1 instead of 1/sqrt(d_k);
- CTranslate2's `return_attention` gives our alignment: the mean over the heads of `alignment_layer`'s
  cross-attention (without the column of the source's EOS, which CTranslate2 adds itself);
- the output projection is the target embedding matrix when tied (Section 3.4), with a bias of -1e9 on PAD and
  BOS: our searches never produce them (`nmt.decoding.search.mask_specials`), and neither does the export.

The vocabularies are the SentencePiece pieces in id order, so CTranslate2's token i is our id i; its unknown,
start and end tokens are named after the pieces at UNK_ID, BOS_ID and EOS_ID, the decoder starts with BOS, and
the source gets its EOS appended (`add_source_eos`), as our models read it. CTranslate2 pads by length, so PAD
is an ordinary token there. A caller passes the source's pieces (`Tokenizer.pieces`) and reads pieces back.

CTranslate2 is optional (`pip install 'nmt-bottleneck[ctranslate2]'`) and imported only when an export runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nmt.data.special import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.errors import UserError
from nmt.files import cannot_write, fixable_os_error
from nmt.models.configs import Positions
from nmt.models.transformer import Transformer

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'nmt-bottleneck[ctranslate2]'"
#: What `quantization` may be: CTranslate2's weight types that a CPU or a GPU can run.
QUANTIZATIONS = (
    "float32",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
)
#: The files CTranslate2 writes into a model directory; `--force` replaces only a directory that has them.
MODEL_FILES = ("model.bin", "config.json")
#: The position encodings CTranslate2 can run as ours computes them (each is tested); any other is refused.
EXPORTABLE_POSITIONS = (Positions.sinusoidal, Positions.learned, Positions.none, Positions.rotary)
#: The logit bias that keeps PAD and BOS from being produced: far below any real logit, finite in float32.
NEVER = -1e9


def import_ctranslate2() -> Any:
    """The `ctranslate2` module, or a `UserError` naming the extra that installs it."""
    try:
        import ctranslate2  # deferred: an optional dependency (the ctranslate2 extra)
    except ImportError:
        raise UserError(f"exporting to CTranslate2 needs the ctranslate2 package: {INSTALL_HINT}") from None
    return ctranslate2


def check_exportable(arch: str, config: Any) -> None:
    """Refuse, before anything is built or written, a model that CTranslate2's Transformer cannot run."""
    if arch != "transformer":
        raise UserError(
            f"only the transformer can be exported to CTranslate2 (this checkpoint holds an {arch} model, "
            "which CTranslate2 has no architecture for)"
        )
    if config.positions not in EXPORTABLE_POSITIONS:
        raise UserError(f"positions '{config.positions.value}' cannot be exported to CTranslate2")


def vocabulary(pieces: Sequence[str], side: str) -> list[str]:
    """The tokens of one side in id order, checked: CTranslate2 looks tokens up by their text, so two ids
    with one text would merge, and the special ids must hold distinct pieces."""
    tokens = list(pieces)
    if len(set(tokens)) != len(tokens):
        raise UserError(
            f"the {side} SentencePiece model has a piece twice; it cannot be a CTranslate2 vocabulary"
        )
    if len(tokens) <= max(PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise UserError(f"the {side} vocabulary has {len(tokens)} pieces, fewer than the special tokens")
    return tokens


def tokenizer_pieces(tokenizer: Any) -> list[str]:
    """Every piece of a `Tokenizer`, in id order."""
    return tokenizer.id_to_piece(range(len(tokenizer)))


# ------------------------------------------------------------------------------------------------------------
# The specification


def _array(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy().copy()


def _set_linear(spec: Any, linear: nn.Linear) -> None:
    spec.weight = _array(linear.weight)  # (out, in), as torch stores it
    if linear.bias is not None:
        spec.bias = _array(linear.bias)


def _set_norm(spec: Any, norm: nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _set_attention(spec: Any, attention: nn.Module, scale: float | None) -> None:
    """Self-attention: [fused q|k|v, out]; cross-attention: [q, fused k|v, out] (the order of `linear`)."""
    projections = [attention.qkv] if hasattr(attention, "qkv") else [attention.q, attention.kv]
    for linear_spec, linear in zip(spec.linear, [*projections, attention.out], strict=True):
        _set_linear(linear_spec, linear)
    if scale is not None:  # unscaled dot products: q . k instead of q . k / sqrt(d_k)
        spec.queries_scale = np.float32(scale)


def _set_ffn(spec: Any, ffn: nn.Module, residual: nn.Module) -> None:
    _set_norm(spec.layer_norm, residual.norm)
    _set_linear(spec.linear_0, ffn.inner)
    _set_linear(spec.linear_1, ffn.outer)


def _position_table(model: Transformer) -> np.ndarray:
    """(max_positions, D): what is added to the scaled embedding at each position (zeros when nothing is)."""
    config = model.config
    if model.positions is None:
        return np.zeros((config.max_positions, config.d_model), dtype=np.float32)
    with torch.no_grad():
        return _array(model.positions(0, config.max_positions))


def _set_embeddings(spec: Any, embedding: nn.Embedding, model: Transformer) -> None:
    embeddings = spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings
    embeddings.weight = _array(embedding.weight)
    spec.scale_embeddings = True  # x sqrt(d_model), Section 3.4
    if hasattr(spec, "position_encodings"):  # absent from a rotary decoder
        spec.position_encodings.encodings = _position_table(model)


def _rotary(model: Transformer) -> dict[str, Any]:
    """The options of CTranslate2's stacks for our positions: rotation of all of each head's dimensions, in
    adjacent pairs, base 10000 (`nmt.models.positions.RotaryPositions`), or nothing."""
    if model.config.positions != Positions.rotary:
        return {}
    return {"rotary_dim": 0, "rotary_interleave": True, "rotary_base": 10000}


def transformer_spec(model: Transformer, source_tokens: Sequence[str], target_tokens: Sequence[str]) -> Any:
    """CTranslate2's `TransformerSpec` holding `model`'s weights, with the vocabularies and the special tokens
    of our ids (see the module docstring). Nothing is written."""
    ctranslate2 = import_ctranslate2()
    specs = ctranslate2.specs
    config = model.config
    scale = None if config.scale_attention else 1.0
    stacks = {"pre_norm": config.norm_first, "activation": specs.Activation.RELU, **_rotary(model)}
    encoder = specs.TransformerEncoderSpec(config.encoder_layers, config.num_heads, **stacks)
    # The alignment that `return_attention` gives: ours, the mean over the heads of `alignment_layer`.
    alignment = {"alignment_layer": model.alignment_layer, "alignment_heads": config.num_heads}
    decoder = specs.TransformerDecoderSpec(config.decoder_layers, config.num_heads, **alignment, **stacks)
    _set_embeddings(encoder, model.src_embed, model)
    for spec, layer in zip(encoder.layer, model.encoder_layers, strict=True):
        _set_attention(spec.self_attention, layer.self_attn, scale)
        _set_norm(spec.self_attention.layer_norm, layer.res_attn.norm)
        _set_ffn(spec.ffn, layer.ffn, layer.res_ffn)
    _set_embeddings(decoder, model.tgt_embed, model)
    for spec, layer in zip(decoder.layer, model.decoder_layers, strict=True):
        _set_attention(spec.self_attention, layer.self_attn, scale)
        _set_norm(spec.self_attention.layer_norm, layer.res_self.norm)
        _set_attention(spec.attention, layer.cross_attn, scale)
        _set_norm(spec.attention.layer_norm, layer.res_cross.norm)
        _set_ffn(spec.ffn, layer.ffn, layer.res_ffn)
    if config.norm_first:  # pre-norm closes each stack with a LayerNorm
        _set_norm(encoder.layer_norm, model.encoder_norm)
        _set_norm(decoder.layer_norm, model.decoder_norm)
    output = model.project.weight if model.project is not None else model.tgt_embed.weight
    decoder.projection.weight = _array(output)
    bias = np.zeros(config.tgt_vocab_size, dtype=np.float32)
    bias[[PAD_ID, BOS_ID]] = NEVER
    decoder.projection.bias = bias

    spec = specs.TransformerSpec(encoder, decoder)
    _set_special_tokens(spec.config, model, source_tokens, target_tokens)
    spec.register_source_vocabulary(list(source_tokens))
    spec.register_target_vocabulary(list(target_tokens))
    return spec


def _set_special_tokens(
    spec_config: Any, model: Transformer, source_tokens: Sequence[str], target_tokens: Sequence[str]
) -> None:
    config = model.config
    for side, tokens, size in (
        ("source", source_tokens, config.src_vocab_size),
        ("target", target_tokens, config.tgt_vocab_size),
    ):
        if len(tokens) != size:
            raise UserError(
                f"the {side} vocabulary has {len(tokens)} pieces but the model has {size} embeddings"
            )
    if source_tokens[EOS_ID] != target_tokens[EOS_ID] or source_tokens[UNK_ID] != target_tokens[UNK_ID]:
        raise UserError("the source and target SentencePiece models name UNK or EOS differently")
    spec_config.unk_token = target_tokens[UNK_ID]
    spec_config.bos_token = target_tokens[BOS_ID]
    spec_config.eos_token = target_tokens[EOS_ID]
    spec_config.decoder_start_token = target_tokens[BOS_ID]  # tgt_in = BOS + ids
    spec_config.add_source_eos = True  # src = ids + EOS
    spec_config.add_source_bos = False
    spec_config.layer_norm_epsilon = float(model.decoder_layers[0].res_ffn.norm.eps)  # torch's 1e-5


# ------------------------------------------------------------------------------------------------------------
# Writing


def save_spec(spec: Any, out_dir: Path, quantization: str | None = None, force: bool = False) -> Path:
    """Quantize the weights (None keeps float32) and write the model directory: into a temporary directory
    beside `out_dir`, renamed into place only when complete. `force` replaces an earlier CTranslate2 model
    directory (or an empty one), never anything else."""
    out_dir = Path(out_dir)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise UserError(f"quantization '{quantization}' is not one of {', '.join(QUANTIZATIONS)}")
    check_out_dir(out_dir, force)
    spec.validate()
    spec.optimize(quantization=quantization)
    created_parent = not out_dir.parent.exists()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    except OSError as error:
        raise cannot_write(out_dir, error) from None
    try:
        tmp.chmod(
            0o777 & ~_umask()
        )  # mkdtemp makes it private; the result should look like any new directory
        spec.save(str(tmp))
        _move_into_place(tmp, out_dir, force)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_parent and out_dir.parent.is_dir() and not any(out_dir.parent.iterdir()):
            out_dir.parent.rmdir()
        cause = fixable_os_error(error)
        if cause is not None:
            raise cannot_write(out_dir, cause) from None
        raise
    logger.info("wrote the CTranslate2 model %s (%s)", out_dir, quantization or "float32")
    return out_dir


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse an existing `out_dir` unless `force`, and even then anything but a CTranslate2 model directory
    or an empty directory (a typo must not remove a folder of other files)."""
    if not out_dir.exists():
        return
    if not force:
        raise UserError(f"{out_dir} already exists; choose another --out or pass --force to replace it")
    if not out_dir.is_dir() or (
        any(out_dir.iterdir()) and not all((out_dir / name).is_file() for name in MODEL_FILES)
    ):
        raise UserError(f"{out_dir} exists and is not a CTranslate2 model directory; refusing to replace it")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(tmp: Path, out_dir: Path, force: bool) -> None:
    """Rename the finished `tmp` to `out_dir`; with `force`, the old directory goes only once the new one is
    complete, and comes back if the rename fails."""
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    check_out_dir(out_dir, force)  # it may have appeared while the model was written
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_ctranslate2(
    checkpoint: Any, out_dir: Path, quantization: str | None = None, force: bool = False
) -> Path:
    """Write `checkpoint` (an `nmt.checkpoint.Checkpoint` of a Transformer) as a CTranslate2 model directory
    `out_dir`, its weights quantized to `quantization` (None or "float32": as trained; "int8", ...).

    Everything that can be refused is refused before anything is written (`UserError`), in this order:
    another architecture, an existing `out_dir` without `force`, a missing ctranslate2, a vocabulary that does
    not fit the model.
    """
    check_exportable(checkpoint.arch, checkpoint.model_config)
    check_out_dir(Path(out_dir), force)
    import_ctranslate2()
    source = vocabulary(tokenizer_pieces(checkpoint.tokenizers.source), "source")
    target = vocabulary(tokenizer_pieces(checkpoint.tokenizers.target), "target")
    try:
        model = checkpoint.build_model("cpu")
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"the checkpoint's weights do not fit its model config ({first[:200]})") from None
    spec = transformer_spec(model, source, target)
    return save_spec(spec, Path(out_dir), quantization, force)


__all__ = [
    "INSTALL_HINT",
    "QUANTIZATIONS",
    "check_exportable",
    "export_ctranslate2",
    "import_ctranslate2",
    "save_spec",
    "tokenizer_pieces",
    "transformer_spec",
    "vocabulary",
]
