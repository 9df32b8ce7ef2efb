"""`nmt prepare`: turn a parallel corpus into a prepared data directory (vocabulary and encoded splits)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nmt.config import SYNTHETIC_DATASET, PrepareConfig, SubwordModel

DEFAULTS = PrepareConfig()
INPUT, CLEANING, VOCABULARY, RUN = (
    "Input",
    "Cleaning (training pairs only)",
    "Subword vocabulary",
    "Output and run",
)


def prepare(
    *,
    source_lang: Annotated[
        str | None,
        typer.Option(
            "--source-lang",
            "-s",
            help="Source language code, e.g. 'de': the file suffix, the column or the translation key. "
            "Optional with the synthetic corpus.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    target_lang: Annotated[
        str | None,
        typer.Option("--target-lang", "-t", help="Target language code, e.g. 'en'.", rich_help_panel=INPUT),
    ] = None,
    train_prefix: Annotated[
        Path | None,
        typer.Option(
            help="Training files PREFIX.SRC and PREFIX.TGT (or PREFIX.SRC.gz and PREFIX.TGT.gz): one "
            "sentence per line, line-aligned.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    dev_prefix: Annotated[
        Path | None,
        typer.Option(
            help="Dev (validation) files, named like the training files. Default: carved from train.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    test_prefix: Annotated[
        Path | None,
        typer.Option(
            help="Test files, named like the training files. Default: carved from train.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Instead of --train-prefix: a Hugging Face hub dataset id (e.g. wmt14), a directory saved "
            "with datasets' save_to_disk, a .json/.jsonl/.csv/.parquet file, or "
            f"'{SYNTHETIC_DATASET}' for the embedded invented language pair. Text columns: 'translation' "
            "{lang: text}, or one column per language.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    dataset_config: Annotated[
        str | None, typer.Option(help="The hub dataset's config name, e.g. de-en.", rich_help_panel=INPUT)
    ] = None,
    dataset_revision: Annotated[
        str | None,
        typer.Option(
            help="Pin the hub dataset to this revision (branch, tag or commit).", rich_help_panel=INPUT
        ),
    ] = None,
    synthetic_size: Annotated[
        int, typer.Option(help="Sentence pairs to generate for --dataset synthetic.", rich_help_panel=INPUT)
    ] = DEFAULTS.synthetic_size,
    dev_size: Annotated[
        int,
        typer.Option(
            help="Pairs carved from train for dev when no dev data is given.", rich_help_panel=INPUT
        ),
    ] = DEFAULTS.dev_size,
    test_size: Annotated[
        int,
        typer.Option(
            help="Pairs carved from train for test when no test data is given.", rich_help_panel=INPUT
        ),
    ] = DEFAULTS.test_size,
    max_tokens: Annotated[
        int,
        typer.Option(
            help="Drop training pairs with more subword tokens than this on either side.",
            rich_help_panel=CLEANING,
        ),
    ] = DEFAULTS.max_tokens,
    max_length_ratio: Annotated[
        float,
        typer.Option(
            help="Drop training pairs whose longer side has more than this many times the subword "
            "tokens of the shorter side (likely misaligned).",
            rich_help_panel=CLEANING,
        ),
    ] = DEFAULTS.max_length_ratio,
    vocab_size: Annotated[
        int,
        typer.Option(
            help="SentencePiece vocabulary size (per language with --separate-vocabularies).",
            rich_help_panel=VOCABULARY,
        ),
    ] = DEFAULTS.vocab_size,
    separate_vocabularies: Annotated[
        bool,
        typer.Option(
            "--separate-vocabularies",
            help="One SentencePiece model per language instead of one joint model for both.",
            rich_help_panel=VOCABULARY,
        ),
    ] = not DEFAULTS.joint_vocabulary,
    model_type: Annotated[
        SubwordModel,
        typer.Option(
            help="SentencePiece algorithm: unigram language model or byte-pair encoding.",
            rich_help_panel=VOCABULARY,
        ),
    ] = DEFAULTS.model_type,
    character_coverage: Annotated[
        float,
        typer.Option(
            help="Share of characters the vocabulary must cover; lower it (e.g. 0.9995) for scripts "
            "with very many characters.",
            rich_help_panel=VOCABULARY,
        ),
    ] = DEFAULTS.character_coverage,
    spm_sample: Annotated[
        int,
        typer.Option(
            help="Train SentencePiece on at most this many randomly sampled sentences (0: all).",
            rich_help_panel=VOCABULARY,
        ),
    ] = DEFAULTS.spm_sample,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Directory to create for the prepared data.", rich_help_panel=RUN),
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace --out if it already holds prepared data.", rich_help_panel=RUN),
    ] = False,
    num_workers: Annotated[
        int, typer.Option(help="Threads for SentencePiece training and encoding.", rich_help_panel=RUN)
    ] = DEFAULTS.num_workers,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed for carving dev/test, SentencePiece's sampling and the synthetic corpus.",
            rich_help_panel=RUN,
        ),
    ] = DEFAULTS.seed,
) -> None:
    """Clean a parallel corpus, train a SentencePiece vocabulary, and encode train, dev and test.

    Training pairs that are empty, duplicated, too long or badly proportioned are dropped (OUT/manifest.json
    counts them); dev and test are kept whole, line for line, for scoring.

    Examples:

      nmt prepare --dataset synthetic --out data/synthetic

      nmt prepare -s de -t en --train-prefix raw/train --dev-prefix raw/dev --test-prefix raw/test -o de-en

      nmt prepare -s de -t en --dataset wmt14 --dataset-config de-en --vocab-size 32000 -o data/wmt14
    """
    from nmt.preparation import format_summary, prepare_data

    config = PrepareConfig(
        source_lang=source_lang, target_lang=target_lang, train_prefix=train_prefix, dev_prefix=dev_prefix,
        test_prefix=test_prefix, dataset=dataset, dataset_config=dataset_config,
        dataset_revision=dataset_revision, synthetic_size=synthetic_size, dev_size=dev_size,
        test_size=test_size, max_tokens=max_tokens, max_length_ratio=max_length_ratio, vocab_size=vocab_size,
        joint_vocabulary=not separate_vocabularies, model_type=model_type,
        character_coverage=character_coverage, spm_sample=spm_sample, num_workers=num_workers, seed=seed,
    )  # fmt: skip
    result = prepare_data(config, out, force=force)
    typer.echo(format_summary(result.manifest, result.path))
