"""What `nmt eval` scores: the test set read from files, and each system's lines, read from a hypothesis file
(--system NAME=FILE) or translated with a checkpoint (--checkpoint NAME=CKPT), or with an ensemble of
several (--checkpoint NAME=A.pt+B.pt: their probabilities averaged at every step). With gold word alignments
(--alignment FILE), each checkpoint with attention also aligns the source with the reference.

Only the reading happens here, with every file checked before any checkpoint is loaded; translating with the
checkpoints, and reading the languages they record (which choose the BLEU tokenizer and the unit of the
length buckets when --target-lang/--source-lang are not given), happen in `nmt.api.evaluate`, which the
command calls with the lines in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nmt.errors import UserError
from nmt.evaluation import check_line_counts
from nmt.evaluation.alignment import GoldAlignment, check_gold_alignments, read_alignments
from nmt.files import read_lines


@dataclass
class TestSet:
    """The source and reference lines and each system's hypotheses, all of the same length."""

    __test__ = False  # not a pytest test class, whatever its name

    sources: list[str]
    references: list[str]
    systems: dict[str, list[str]]
    gold_alignments: list[GoldAlignment] | None = None  # one per line, when --alignment is given


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
    (`nmt.api.evaluate`), in the order given.

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
    test_set = TestSet(sources, references, hypotheses, gold)
    checkpoints = [(name, ensemble_paths(path)) for option, name, path in parsed if option == "--checkpoint"]
    return test_set, checkpoints
