"""int8 decoding on the CPU (`nmt translate --int8`): a trained model's weight products in 8-bit integers.

`quantize_int8(model)` converts a float32 model in place, on the CPU, and returns it; the contract
(`encode`, `start`, `step`, `reorder`, `forward`) is unchanged, so search, sampling, forced scoring and an
`Ensemble` of converted members work as before. Nothing is converted on disk: a checkpoint stays float32 and
is converted each time it is loaded with `int8=True` (`nmt.decoding.loading`), in well under a second.

What becomes int8 (dynamic quantization, `torch.ao.nn.quantized.dynamic`, on fbgemm's x86 kernels):

- every `nn.Linear`: the Transformer's attention projections (fused Q/K/V, cross-attention Q and K/V, the
  output of each) and feed-forward layers; RNNsearch's decoder products (from the previous word, the context
  and the state), its key projection U_a and the deep output; the rnn model's summary and initial state and
  its deep output. Weights are int8, symmetric, with one scale per output row (per channel), fixed at
  conversion. Each call quantizes its input to 8 bits (7 used: fbgemm reserves one against overflow in its
  16-bit pair sums) over the range of that input tensor, measured at the call (dynamic: no calibration data),
  multiplies in integers with int32 accumulation, and returns float32 with the bias added in float.
- the vocabulary projection of a Transformer with a tied output (Section 3.4 of Vaswani et al. 2017): it
  reads the target embedding matrix, so an int8 copy of that matrix becomes the model's `project`; lookups
  still read the float32 table. Converted, the model holds the matrix once in float32 and once in int8.
- the encoders' `nn.GRU` (both recurrent models): their input and recurrent products, int8 per channel.

What stays float32, and why:

- embeddings (a lookup, no product), layer norms, softmax, the GRU gates' nonlinearities and every
  element-wise operation: no weight product, nothing for int8 kernels to do;
- attention's own products (Q K^T and the weights times V; RNNsearch's weighted sum of annotations): both
  sides are activations, computed anew for every sentence, so there is no weight to store in int8;
- `nn.Linear` layers with fewer than `MIN_OUTPUTS` outputs (RNNsearch's v_a, one output): a vector product,
  for which quantizing the input costs more than the product (v_a over 320 x 32 annotations of 256 units,
  one thread: about 4 ms in float32, 10 ms in int8);
- the rnn model's decoder GRU: `start` and `step` read its weight matrices in slices (the context's columns
  once per sentence, the word's at every step) instead of calling the module, and an int8 GRU has no weight
  matrices to slice (`FLOAT32_MODULES`).

One consequence of per-tensor input scales: all rows of a batch (sentences and beams) share each product's
input scale, so a sentence's int8 output can depend slightly on what it is batched with, and teacher forcing
(`forward`, all positions at once) agrees with stepping only to within that rounding. Float32 has neither
effect. docs/results.md (section 8) measures what int8 costs in BLEU and gains in speed.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as int8_modules
from torch.ao.quantization import per_channel_dynamic_qconfig

from nmt.errors import UserError
from nmt.models.base import Seq2Seq
from nmt.models.ensemble import Ensemble
from nmt.models.rnn import RNNEncoderDecoder
from nmt.models.transformer import Transformer

#: Linear layers with fewer outputs stay float32 (see the module docstring).
MIN_OUTPUTS = 8

#: Modules, by attribute name per model class, whose weights the model reads as tensors rather than calling
#: the module: they stay float32 (see the module docstring).
FLOAT32_MODULES: dict[type[Seq2Seq], tuple[str, ...]] = {RNNEncoderDecoder: ("decoder",)}

#: The module types a conversion produces.
INT8_TYPES = (int8_modules.Linear, int8_modules.GRU)

CPU_ONLY = "int8 decoding runs on the CPU only (its matrix products are CPU kernels)"


def int8_device(requested: str) -> str:
    """The device name to decode with int8 weights, given the --device a user asked for: the CPU for 'auto'
    and 'cpu'; anything else is refused, since the int8 kernels are the CPU's."""
    if requested in ("auto", "cpu"):
        return "cpu"
    raise UserError(f"--int8 cannot run on --device {requested}: {CPU_ONLY}; use --device cpu or drop --int8")


def quantize_int8(model: Seq2Seq) -> Seq2Seq:
    """Convert `model` (on the CPU; an `Ensemble` member by member) in place for int8 decoding and return it,
    in eval mode. See the module docstring for what becomes int8. Raises `UserError` for a model on another
    device."""
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        found = ", ".join(sorted(devices - {"cpu"}))
        raise UserError(f"cannot convert a model on {found} to int8: {CPU_ONLY}; load it on the CPU")
    if torch.backends.quantized.engine not in ("x86", "fbgemm", "onednn", "qnnpack"):
        raise UserError(
            f"this torch has no int8 engine for this CPU (torch.backends.quantized.engine is "
            f"{torch.backends.quantized.engine!r}); decode without --int8"
        )
    for member in model.members if isinstance(model, Ensemble) else [model]:
        _convert(member)
    return model.eval()


def _convert(model: Seq2Seq) -> None:
    model.eval()
    kept = {  # a subclass (a benchmark variant, say) reads its weights as its parent does
        getattr(model, name)
        for kind, names in FLOAT32_MODULES.items()
        if isinstance(model, kind)
        for name in names
    }
    tied = isinstance(model, Transformer) and model.project is None  # `logits` reads the embedding matrix
    with warnings.catch_warnings():
        # torch marks its quantized tensor types deprecated (pytorch issue 184982) while its dynamic int8
        # modules still build on them; the warning says nothing a user of `--int8` can act on.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        _convert_children(model, kept)
        if tied:
            model.project = _int8_linear(_linear_reading(model.tgt_embed.weight))
        model.int8 = True


def _convert_children(module: nn.Module, kept: set[nn.Module]) -> None:
    """Replace every float `nn.Linear` and `nn.GRU` under `module` by its int8 form, except `kept` ones."""
    for name, child in module.named_children():
        if child in kept:
            continue
        if type(child) is nn.Linear:
            if child.out_features >= MIN_OUTPUTS:
                setattr(module, name, _int8_linear(child))
        elif type(child) is nn.GRU:
            setattr(module, name, _int8_gru(child))
        else:
            _convert_children(child, kept)


def _linear_reading(weight: torch.Tensor) -> nn.Linear:
    """A bias-free `nn.Linear` whose weight is `weight` (V, D): the tied output projection as a module."""
    linear = nn.Linear(weight.size(1), weight.size(0), bias=False)
    linear.weight = nn.Parameter(weight.detach(), requires_grad=False)
    return linear


def _int8_linear(linear: nn.Linear) -> nn.Module:
    linear.qconfig = per_channel_dynamic_qconfig  # int8 weights, one scale per output row
    return int8_modules.Linear.from_float(linear)


def _int8_gru(gru: nn.GRU) -> nn.Module:
    gru.qconfig = per_channel_dynamic_qconfig
    return int8_modules.GRU.from_float(gru)


def is_int8(model: nn.Module) -> bool:
    """Whether `model` (or every member of an ensemble) was converted by `quantize_int8`."""
    members = model.members if isinstance(model, Ensemble) else [model]
    return all(getattr(member, "int8", False) for member in members)


__all__ = ["FLOAT32_MODULES", "INT8_TYPES", "MIN_OUTPUTS", "int8_device", "is_int8", "quantize_int8"]
