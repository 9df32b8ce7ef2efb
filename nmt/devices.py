"""Choosing the device to run on."""

from __future__ import annotations

import torch

from nmt.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; any other name must be usable here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available (use --device cpu or auto)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{name}' requested but MPS is not available (use --device cpu or auto)")
    return device


def prepare_device(device: torch.device) -> None:
    """Process-wide settings that make variable-shape batches fast on `device`.

    On CUDA, scaled_dot_product_attention may pick cuDNN's kernel, which builds an execution plan for each
    new (batch, source, target) shape; with token-budget batches nearly every batch has a new shape, and the
    planning then costs far more than the attention itself. The flash / memory-efficient kernels need none.
    """
    if device.type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)
