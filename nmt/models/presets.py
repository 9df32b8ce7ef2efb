"""Presets: named sizes of each architecture, with the training settings that suit them.

Each is (model config values, training config values), applied over the dataclasses' defaults; a YAML file and
command-line options apply over a preset. `tiny` is for tests, `small` trains in minutes on a CPU, and the
`-paper` presets and `transformer-base` are the published sizes.
"""

from __future__ import annotations

from typing import Any

from nmt.config import Schedule

DEFAULT_PRESET = "small"


_RNN_TRAIN = {"lr": 1e-3, "schedule": Schedule.plateau, "label_smoothing": 0.0, "betas": (0.9, 0.999)}
_TRANSFORMER_TRAIN = {"lr": 7e-4, "schedule": Schedule.inverse_sqrt, "label_smoothing": 0.1}

PRESETS: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "rnn": {
        "tiny": (
            {"embed_dim": 32, "hidden_dim": 64, "dropout": 0.0},
            {**_RNN_TRAIN, "batch_tokens": 512, "lr": 5e-3},
        ),
        "small": (
            {"embed_dim": 128, "hidden_dim": 256, "dropout": 0.1},
            {**_RNN_TRAIN, "batch_tokens": 2048, "lr": 5e-3},
        ),
        "base": ({"embed_dim": 256, "hidden_dim": 512, "dropout": 0.2}, {**_RNN_TRAIN, "batch_tokens": 4096}),
        # Bahdanau et al. 2014, App. A.2: embeddings 620, hidden 1000, maxout 500; the decoder of Cho et al.
        # 2014, App. A.2, with c inside the candidate's reset gate.
        "rnnencdec-paper": (
            {
                "embed_dim": 620,
                "hidden_dim": 1000,
                "maxout_dim": 500,
                "dropout": 0.0,
                "context_in_reset": True,
            },
            {**_RNN_TRAIN, "batch_tokens": 8192},
        ),
    },
    "rnnsearch": {
        "tiny": (
            {"embed_dim": 32, "hidden_dim": 64, "attention_dim": 64, "dropout": 0.0},
            {**_RNN_TRAIN, "batch_tokens": 512, "lr": 5e-3},
        ),
        "small": (
            {"embed_dim": 128, "hidden_dim": 256, "attention_dim": 256, "dropout": 0.1},
            {**_RNN_TRAIN, "batch_tokens": 2048, "lr": 5e-3},
        ),
        "base": (
            {"embed_dim": 256, "hidden_dim": 512, "attention_dim": 512, "dropout": 0.2},
            {**_RNN_TRAIN, "batch_tokens": 4096},
        ),
        "rnnsearch-paper": (
            {"embed_dim": 620, "hidden_dim": 1000, "attention_dim": 1000, "maxout_dim": 500, "dropout": 0.0},
            {**_RNN_TRAIN, "batch_tokens": 8192},
        ),
    },
    "transformer": {
        "tiny": (
            {
                "d_model": 64,
                "num_heads": 4,
                "ffn_dim": 128,
                "encoder_layers": 2,
                "decoder_layers": 2,
                "dropout": 0.0,
            },
            {**_TRANSFORMER_TRAIN, "warmup_steps": 100, "batch_tokens": 512, "lr": 2e-3},
        ),
        "small": (
            {
                "d_model": 128,
                "num_heads": 4,
                "ffn_dim": 512,
                "encoder_layers": 3,
                "decoder_layers": 3,
                "dropout": 0.1,
            },
            {**_TRANSFORMER_TRAIN, "warmup_steps": 200, "batch_tokens": 2048, "lr": 2e-3},
        ),
        "base": (
            {"d_model": 512, "num_heads": 8, "ffn_dim": 2048, "encoder_layers": 6, "decoder_layers": 6},
            {**_TRANSFORMER_TRAIN, "warmup_steps": 4000, "batch_tokens": 8192},
        ),
        # Vaswani et al. 2017, Table 3, "base".
        "transformer-base": (
            {"d_model": 512, "num_heads": 8, "ffn_dim": 2048, "encoder_layers": 6, "decoder_layers": 6},
            {**_TRANSFORMER_TRAIN, "warmup_steps": 4000, "batch_tokens": 8192},
        ),
    },
}
