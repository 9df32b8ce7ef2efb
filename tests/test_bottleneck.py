"""The finding the toolkit exists to show, at a budget CI can afford: on the synthetic corpus, attention
(RNNsearch) beats the fixed-vector encoder-decoder (rnn) on the longest sentences by a clear margin
(Bahdanau et al. 2014, Figure 2). `make demo` shows the same at a larger budget."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_nmt

TRAIN_STEPS = 300
MARGIN = 10.0  # BLEU points in the 40+ words bucket


@pytest.mark.slow
def test_attention_beats_the_fixed_vector_on_long_sentences(tmp_path):
    torch.set_num_threads(2)
    data = tmp_path / "data"
    prepared = run_nmt(
        "prepare", "--dataset", "synthetic", "--synthetic-size", "12000", "--test-size", "300",
        "--dev-size", "100", "--model-type", "bpe", "--vocab-size", "1000", "--out", data,
    )  # fmt: skip
    assert prepared.exit_code == 0, prepared.stderr
    systems = []
    for model in ("rnn", "rnnsearch"):
        trained = run_nmt(
            "train", "--data", data, "--model", model, "--preset", "small", "--max-steps", TRAIN_STEPS,
            "--validate-every", TRAIN_STEPS, "--dev-sentences", "50", "--device", "cpu",
            "--out", tmp_path / model,
        )  # fmt: skip
        assert trained.exit_code == 0, trained.stderr
        systems += ["--checkpoint", f"{model}={tmp_path / model / 'last.pt'}"]
    report = tmp_path / "report.json"
    scored = run_nmt(
        "eval", "--source", data / "text" / "test.ul", "--reference", data / "text" / "test.zk", *systems,
        "--buckets", "0,20,40", "--beam", "1", "--bootstrap", "100", "--device", "cpu", "--json", report,
    )  # fmt: skip
    assert scored.exit_code == 0, scored.stderr
    bleu = {
        system["name"]: system["buckets"][-1]["BLEU"]["score"]
        for system in json.loads(report.read_text())["systems"]
    }
    assert bleu["rnnsearch"] > bleu["rnn"] + MARGIN, bleu
