"""What `nmt eval` scores: the test set read from files, and each system's lines, read from a hypothesis file
(--system NAME=FILE) or translated with a checkpoint (--checkpoint NAME=CKPT), or with an ensemble of
several (--checkpoint NAME=A.pt+B.pt: their probabilities averaged at every step). With gold word alignments
(--alignment FILE), each checkpoint with attention also aligns the source with the reference.

Reading and translating happen here, before the library's `evaluate_systems`, which takes lines in memory;
so does reading the languages recorded in the checkpoints, which choose the BLEU tokenizer and the unit of
the length buckets when --target-lang/--source-lang are not given.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from nmt.config import DecodeConfig, EvalConfig
from nmt.errors import UserError
from nmt.evaluation import check_line_counts
from nmt.evaluation.alignment import GoldAlignment, Link, check_gold_alignments, read_alignments
from nmt.files import read_lines

logger = logging.getLogger(__name__)


@dataclass
class TestSet:
    """The source and reference lines and each system's hypotheses, all of the same length."""

    __test__ = False  # not a pytest test class, whatever its name

    sources: list[str]
    references: list[str]
    systems: dict[str, list[str]]
    gold_alignments: list[GoldAlignment] | None = None  # one per line, when --alignment is given
    # Each system's word alignment of the sources with the references (None: it has no attention to read
    # them from); empty without --alignment.
    alignments: dict[str, list[list[Link]] | None] = field(default_factory=dict)


def read_test_file(path: Path) -> list[str]:
    """The lines of a source, reference or hypothesis file (`nmt.files.read_lines`); empty is an error."""
    lines = read_lines(Path(path))
    if not lines:
        raise UserError(f"{path} is empty (0 lines); it needs one line per source sentence")
    return lines


def parse_named_path(spec: str, option: str) -> tuple[str, Path]:
    """'NAME=PATH' -> (NAME, Path(PATH))."""
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise UserError(f"{option} '{spec}' must look like NAME=FILE, e.g. {option} baseline=out.en")
    return name.strip(), Path(path.strip())


def ensemble_paths(path: Path) -> list[Path]:
    """The checkpoints of a --checkpoint value: 'A.pt+B.pt' is an ensemble of A.pt and B.pt, unless a file
    of that very name exists (a checkpoint whose name holds '+')."""
    if path.is_file() or "+" not in str(path):
        return [path]
    parts = str(path).split("+")
    if not all(part.strip() for part in parts):
        raise UserError(f"--checkpoint '{path}': an ensemble is CKPT+CKPT+..., with no empty name")
    return [Path(part.strip()) for part in parts]


def read_test_set(
    source: Path,
    reference: Path,
    system_specs: list[str],
    checkpoint_specs: list[str],
    alignment: Path | None = None,
) -> tuple[TestSet, list[tuple[str, list[Path]]]]:
    """Read the files and the hypothesis files (NAME=FILE), and compare the line counts; return the test set
    and the checkpoints (NAME, [CKPT, ...]: one, or an ensemble's) still to translate
    (`translate_checkpoints`), in the order given.

    Nothing here loads a model: every file is read and checked before any checkpoint is.
    """
    named = [("--system", spec) for spec in system_specs] + [
        ("--checkpoint", spec) for spec in checkpoint_specs
    ]
    if not named:
        raise UserError("nothing to evaluate: give at least one --system NAME=FILE or --checkpoint NAME=CKPT")
    parsed = [(option, *parse_named_path(spec, option)) for option, spec in named]
    seen: set[str] = set()
    for _, name, _ in parsed:
        if name in seen:
            raise UserError(
                f"system name '{name}' is given twice; give every --system/--checkpoint its own name"
            )
        seen.add(name)
    sources, references = read_test_file(source), read_test_file(reference)
    hypotheses = {name: read_test_file(path) for option, name, path in parsed if option == "--system"}
    gold = read_alignments(alignment) if alignment is not None else None
    check_line_counts(
        {f"source {source}": len(sources), f"reference {reference}": len(references)}
        | ({f"alignment {alignment}": len(gold)} if gold is not None else {})
        | {
            f"system '{name}' {path}": len(hypotheses[name])
            for option, name, path in parsed
            if option == "--system"
        }
    )
    if gold is not None:
        check_gold_alignments(gold, sources, references, alignment)
    test_set = TestSet(sources, references, {}, gold)
    for name, lines in hypotheses.items():
        test_set.systems[name] = lines
        if gold is not None:
            test_set.alignments[name] = None  # a file of translations has no attention
    checkpoints = [(name, ensemble_paths(path)) for option, name, path in parsed if option == "--checkpoint"]
    return test_set, checkpoints


def with_checkpoint_languages(config: EvalConfig, checkpoints: list[Path]) -> EvalConfig:
    """`config` with the source and target languages it lacks taken from the checkpoints, when they all
    agree (a checkpoint records the languages of the data it was trained on); left None when they differ."""
    if not checkpoints or (config.source_lang is not None and config.target_lang is not None):
        return config
    # deferred: torch takes seconds to import and only --checkpoint needs it
    from nmt.checkpoint import load_checkpoint

    languages = [load_checkpoint(path).languages for path in checkpoints]
    found = {side: _agreed(side, [lang.get(side) for lang in languages]) for side in ("source", "target")}
    return dataclasses.replace(
        config,
        source_lang=config.source_lang or found["source"],
        target_lang=config.target_lang or found["target"],
    )


def _agreed(side: str, codes: list[str | None]) -> str | None:
    """The one language all the checkpoints name for `side`; None (with a warning) when they differ."""
    distinct = set(codes)
    if len(distinct) == 1:
        return distinct.pop()
    logger.warning(
        "the checkpoints' %s languages differ (%s): none is used; give --%s-lang",
        side,
        ", ".join(sorted(str(code) for code in distinct)),
        side,
    )
    return None


def translate_checkpoints(
    test_set: TestSet,
    checkpoints: list[tuple[str, list[Path]]],
    decode: DecodeConfig | None = None,
    device: str = "auto",
) -> None:
    """Add each checkpoint's (or ensemble's) translations of the sources to `test_set` (and its alignments,
    when the test set has gold ones), in the order given."""
    for name, paths in checkpoints:
        _run_checkpoint(test_set, name, paths, decode or DecodeConfig(), device)


def _run_checkpoint(
    test_set: TestSet, name: str, paths: list[Path], decode: DecodeConfig, device: str
) -> None:
    """Translate the sources with the checkpoint (or the ensemble of several) and, with gold alignments,
    align source and reference."""
    # deferred: torch takes seconds to import and only --checkpoint needs it
    from nmt.decoding.alignment import align_words
    from nmt.decoding.translation import load_translator, translate_texts
    from nmt.devices import resolve_device

    torch_device = resolve_device(device)
    model, loaded = load_translator(paths, torch_device)  # once, for translating and aligning
    shown = " + ".join(str(path) for path in paths)
    logger.info("system '%s': %s", name, shown)
    test_set.systems[name] = translate_texts(model, loaded.tokenizers, test_set.sources, decode, torch_device)
    if test_set.gold_alignments is None:
        return
    if not model.has_attention:
        test_set.alignments[name] = None  # nothing to align with: reported as n/a
        return
    logger.info("aligning %d pairs with the attention of %s", len(test_set.sources), shown)
    test_set.alignments[name] = align_words(
        model, loaded.tokenizers, test_set.sources, test_set.references, torch_device
    )
