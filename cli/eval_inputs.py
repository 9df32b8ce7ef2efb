"""What `nmt eval` scores: the test set read from files, and each system's lines, read from a hypothesis file
(--system NAME=FILE) or translated with a checkpoint (--checkpoint NAME=CKPT). With gold word alignments
(--alignment FILE), each checkpoint with attention also aligns the source with the reference.

Reading and translating happen here, before the library's `evaluate_systems`, which takes lines in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nmt.config import DecodeConfig
from nmt.errors import UserError
from nmt.evaluation import check_line_counts
from nmt.evaluation.alignment import GoldAlignment, Link, check_gold_alignments, read_alignments
from nmt.files import read_lines


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


def load_test_set(
    source: Path,
    reference: Path,
    system_specs: list[str],
    checkpoint_specs: list[str],
    decode: DecodeConfig | None = None,
    device: str = "auto",
    alignment: Path | None = None,
) -> TestSet:
    """Read the files, hypothesis files (NAME=FILE) and translate with checkpoints (NAME=CKPT), in that order;
    with `alignment` (gold word alignments of source and reference), align with each checkpoint's attention.

    Every file is read and the line counts are compared before any model is loaded.
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
    for option, name, path in parsed:  # in the order given on the command line
        if option == "--system":
            test_set.systems[name] = hypotheses[name]
            if gold is not None:
                test_set.alignments[name] = None  # a file of translations has no attention
        else:
            _run_checkpoint(test_set, name, path, decode or DecodeConfig(), device)
    return test_set


def _run_checkpoint(test_set: TestSet, name: str, path: Path, decode: DecodeConfig, device: str) -> None:
    """Translate the sources with the checkpoint and, with gold alignments, align source and reference."""
    # deferred: torch takes seconds to import and only --checkpoint needs it
    from nmt.decoding.alignment import align_with_checkpoint
    from nmt.decoding.translation import translate_with_checkpoint

    test_set.systems[name] = translate_with_checkpoint(path, test_set.sources, decode, device)
    if test_set.gold_alignments is not None:
        test_set.alignments[name] = align_with_checkpoint(path, test_set.sources, test_set.references, device)
