"""`nmt prepare`: turn a parallel corpus into a prepared data directory (vocabulary and encoded splits)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from nmt.config import SYNTHETIC_DATASET, PrepareConfig, SubwordModel, build
from nmt.data.recipes import recipe_config

DEFAULTS = PrepareConfig()  # shown in --help; an option left out takes the recipe's value, or else this one
INPUT, CLEANING, VOCABULARY, RUN = (
    "Input",
    "Cleaning (training pairs only)",
    "Subword vocabulary",
    "Output and run",
)


def _default(name: str) -> str:
    value = getattr(DEFAULTS, name)
    return str(getattr(value, "value", value))


def prepare(
    *,
    recipe: Annotated[
        Path | None,
        typer.Option(
            help="A recipe: a YAML file of these settings for a standard corpus (see data/recipes/ and "
            "data/README.md). Options given beside it override its values.",
            rich_help_panel=INPUT,
        ),
    ] = None,
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
        int | None,
        typer.Option(
            help="Sentence pairs to generate for --dataset synthetic.",
            show_default=_default("synthetic_size"),
            rich_help_panel=INPUT,
        ),
    ] = None,
    dev_size: Annotated[
        int | None,
        typer.Option(
            help="Pairs carved from train for dev when no dev data is given.",
            show_default=_default("dev_size"),
            rich_help_panel=INPUT,
        ),
    ] = None,
    test_size: Annotated[
        int | None,
        typer.Option(
            help="Pairs carved from train for test when no test data is given.",
            show_default=_default("test_size"),
            rich_help_panel=INPUT,
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help="Drop training pairs with more subword tokens than this on either side.",
            show_default=_default("max_tokens"),
            rich_help_panel=CLEANING,
        ),
    ] = None,
    max_length_ratio: Annotated[
        float | None,
        typer.Option(
            help="Drop training pairs whose longer side has more than this many times the subword "
            "tokens of the shorter side (likely misaligned).",
            show_default=_default("max_length_ratio"),
            rich_help_panel=CLEANING,
        ),
    ] = None,
    vocab_size: Annotated[
        int | None,
        typer.Option(
            help="SentencePiece vocabulary size (per language with --separate-vocabularies).",
            show_default=_default("vocab_size"),
            rich_help_panel=VOCABULARY,
        ),
    ] = None,
    separate_vocabularies: Annotated[
        bool | None,
        typer.Option(
            "--separate-vocabularies/--joint-vocabulary",
            help="One SentencePiece model per language, or one joint model for both.",
            show_default="--joint-vocabulary" if DEFAULTS.joint_vocabulary else "--separate-vocabularies",
            rich_help_panel=VOCABULARY,
        ),
    ] = None,
    model_type: Annotated[
        SubwordModel | None,
        typer.Option(
            help="SentencePiece algorithm: unigram language model or byte-pair encoding.",
            show_default=_default("model_type"),
            rich_help_panel=VOCABULARY,
        ),
    ] = None,
    character_coverage: Annotated[
        float | None,
        typer.Option(
            help="Share of characters the vocabulary must cover; lower it (e.g. 0.9995) for scripts "
            "with very many characters.",
            show_default=_default("character_coverage"),
            rich_help_panel=VOCABULARY,
        ),
    ] = None,
    spm_sample: Annotated[
        int | None,
        typer.Option(
            help="Train SentencePiece on at most this many randomly sampled sentences (0: all).",
            show_default=_default("spm_sample"),
            rich_help_panel=VOCABULARY,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Directory to create for the prepared data.", rich_help_panel=RUN),
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace --out if it already holds prepared data.", rich_help_panel=RUN),
    ] = False,
    num_workers: Annotated[
        int | None,
        typer.Option(
            help="Processes that clean and encode the corpus (and threads for SentencePiece training).",
            show_default=_default("num_workers"),
            rich_help_panel=RUN,
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help="Pairs read, cleaned and encoded at a time. Memory grows with it, not with the corpus: "
            "lower it if memory is short.",
            show_default=_default("chunk_size"),
            rich_help_panel=RUN,
        ),
    ] = None,
    memory_budget_mb: Annotated[
        int | None,
        typer.Option(
            help="Memory (MB) the run aims to stay within: SentencePiece trains on fewer than --spm-sample "
            "sentences when that many would not fit.",
            show_default=_default("memory_budget_mb"),
            rich_help_panel=RUN,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed for carving dev/test, SentencePiece's sampling and the synthetic corpus.",
            show_default=_default("seed"),
            rich_help_panel=RUN,
        ),
    ] = None,
) -> None:
    """Clean a parallel corpus, train a SentencePiece vocabulary, and encode train, dev and test.

    Training pairs that are empty, duplicated, too long or badly proportioned are dropped (OUT/manifest.json
    counts them); dev and test are kept whole, line for line, for scoring.

    Examples:

      nmt prepare --recipe data/recipes/multi30k-en-de.yaml --out data/prepared/multi30k-en-de

      nmt prepare --dataset synthetic --out data/synthetic

      nmt prepare -s de -t en --train-prefix raw/train --dev-prefix raw/dev --test-prefix raw/test -o de-en

      nmt prepare -s de -t en --dataset wmt14 --dataset-config de-en --vocab-size 32000 -o data/wmt14
    """
    given = dict(locals())
    # Deferred: the pipeline loads datasets, pyarrow and sentencepiece, which `nmt --help` does not need.
    from nmt.data.preparation import format_summary, prepare_data

    # Only the options the user gave (None: left out) override the recipe, or else the defaults.
    values = {f.name: given[f.name] for f in fields(PrepareConfig) if given.get(f.name) is not None}
    if separate_vocabularies is not None:
        values["joint_vocabulary"] = not separate_vocabularies
    config = recipe_config(recipe, values) if recipe else build(PrepareConfig, values, "prepare setting")
    result = prepare_data(config, out, force=force)
    typer.echo(format_summary(result.manifest, result.path))
