"""Word alignments: the Pharaoh format, and their quality against a gold alignment (alignment error rate).

A word alignment of one sentence pair is a set of links (i, j): source word i is aligned to target word j,
both 0-based, words split at whitespace. The Pharaoh format writes one sentence pair per line as
space-separated links "i-j"; a gold alignment may also mark possible links "ipj" (the convention of the
alignment-scripts of Zenkel et al. 2019), besides the sure ones. An empty line is a pair with no links.

The scores are those of Och and Ney (2003), "A Systematic Comparison of Various Statistical Alignment
Models", Section 5: with A the hypothesis links, S the sure and P the possible gold links (P includes S; a
gold file with only sure links has P = S),

    precision = |A n P| / |A|,   recall = |A n S| / |S|,   AER = 1 - (|A n S| + |A n P|) / (|A| + |S|),

each count summed over the corpus before dividing (a corpus score, not a mean of sentence scores).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nmt.errors import UserError
from nmt.files import atomic_write, read_lines

Link = tuple[int, int]  # (source word, target word), 0-based
SURE, POSSIBLE = "-", "p"  # the separators of a sure and of a possible link


@dataclass(frozen=True)
class GoldAlignment:
    """The gold alignment of one sentence pair: sure links S, and possible links P (which include S)."""

    sure: frozenset[Link]
    possible: frozenset[Link]

    @classmethod
    def of(cls, sure: Iterable[Link], possible: Iterable[Link] = ()) -> GoldAlignment:
        sure = frozenset(sure)
        return cls(sure, sure | frozenset(possible))


# ------------------------------------------------------------------------------------------------------------
# The Pharaoh format


def format_alignment(links: Iterable[Link]) -> str:
    """One Pharaoh line: the links as "i-j", sorted."""
    return " ".join(f"{i}-{j}" for i, j in sorted(set(links)))


def parse_alignment(line: str) -> GoldAlignment:
    """A Pharaoh line ("0-0 1-2 2p1"). Raises ValueError, with the bad link, for anything else."""
    sure, possible = set(), set()
    for token in line.split():
        separator = SURE if SURE in token else POSSIBLE
        left, found, right = token.partition(separator)
        if not found or not (left.isdecimal() and right.isdecimal() and left.isascii() and right.isascii()):
            raise ValueError(f"'{token}' is not a link 'i-j' (or a possible link 'ipj') of word indices")
        (sure if separator == SURE else possible).add((int(left), int(right)))
    return GoldAlignment.of(sure, possible)


def read_alignments(path: Path) -> list[GoldAlignment]:
    """Every line of a Pharaoh file; a bad line is a UserError that names the file and the line."""
    alignments = []
    for number, line in enumerate(read_lines(Path(path)), start=1):
        try:
            alignments.append(parse_alignment(line))
        except ValueError as error:
            raise UserError(f"{path} line {number}: {error}") from None
    return alignments


def write_alignments(path: Path, alignments: Iterable[Iterable[Link]]) -> None:
    """One Pharaoh line per sentence pair; the file appears whole or not at all."""
    text = "".join(format_alignment(links) + "\n" for links in alignments)
    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def check_gold_alignments(
    gold: Sequence[GoldAlignment], sources: Sequence[str], targets: Sequence[str], path: Path
) -> None:
    """A UserError, naming the file and line, for a link past the end of its source or target sentence, or
    for a gold file without a single sure link (nothing to score against)."""
    if not any(alignment.sure for alignment in gold):
        raise UserError(f"{path} has no sure links (i-j): there is nothing to score alignments against")
    for number, (alignment, source, target) in enumerate(zip(gold, sources, targets, strict=True), start=1):
        source_words, target_words = len(source.split()), len(target.split())
        for i, j in sorted(alignment.possible):
            if i >= source_words or j >= target_words:
                raise UserError(
                    f"{path} line {number}: link {i}-{j} is outside the sentence pair, which has "
                    f"{source_words} source and {target_words} target words (indices count from 0)"
                )


# ------------------------------------------------------------------------------------------------------------
# Scores


@dataclass(frozen=True)
class AlignmentScores:
    """The corpus counts of Och and Ney (2003, Section 5) and the scores made of them (fractions, 0 to 1)."""

    hypothesis: int  # |A|
    sure: int  # |S|
    possible: int  # |P|
    hypothesis_sure: int  # |A n S|
    hypothesis_possible: int  # |A n P|

    @property
    def precision(self) -> float:
        """|A n P| / |A|; 0 for an empty hypothesis, which proposes nothing right."""
        return self.hypothesis_possible / self.hypothesis if self.hypothesis else 0.0

    @property
    def recall(self) -> float:
        return self.hypothesis_sure / self.sure

    @property
    def aer(self) -> float:
        return 1 - (self.hypothesis_sure + self.hypothesis_possible) / (self.hypothesis + self.sure)

    def to_dict(self) -> dict:
        return {
            "aer": self.aer,
            "precision": self.precision,
            "recall": self.recall,
            "hypothesis_links": self.hypothesis,
            "sure_links": self.sure,
            "possible_links": self.possible,
        }


def alignment_scores(hypotheses: Sequence[Iterable[Link]], gold: Sequence[GoldAlignment]) -> AlignmentScores:
    """Precision, recall and AER of the hypothesis alignments against the gold ones, sentence by sentence,
    summed over the corpus. The gold needs at least one sure link, or recall and AER mean nothing."""
    if len(hypotheses) != len(gold):
        raise ValueError(f"{len(hypotheses)} hypothesis alignments for {len(gold)} gold ones")
    counts = [0, 0, 0, 0, 0]
    for links, reference in zip(hypotheses, gold, strict=True):
        links = set(links)
        sentence = (
            len(links),
            len(reference.sure),
            len(reference.possible),
            len(links & reference.sure),
            len(links & reference.possible),
        )
        counts = [total + count for total, count in zip(counts, sentence, strict=True)]
    if counts[1] == 0:
        raise UserError("the gold alignment has no sure links: there is nothing to score against")
    return AlignmentScores(*counts)
