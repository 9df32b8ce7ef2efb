"""Hostile text through `nmt translate` and `nmt eval` at scale: no crash, and every line count kept.

LINES hostile lines (control characters, NUL, right-to-left text, emoji with joiners, combining marks,
Unicode line separators, byte-order marks, 10,000-character lines, empty lines) are split into FILES files.
Each file is translated by `nmt translate` with an untrained tiny checkpoint (rnn, rnnsearch and transformer
in turn; the last file through standard input and output): one output line per input line. Then `nmt eval`
scores each file's translation and a file of hostile text against a hostile reference of the same length:
exit code 0 and every sentence counted. Last, files of unequal line counts must be refused with exit code 2
and one line on stderr.
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stress.common import NMT, make_toy_data, parser, run_command, run_script, tail, tiny_checkpoint  # noqa: E402
from stress.hostile import count_lines, hostile_lines, write_lines  # noqa: E402

ARCHITECTURES = ("rnn", "rnnsearch", "transformer")
# Short outputs: the checkpoints are untrained, and what is tested is the handling of lines, not decoding.
DECODING = ["--beam", "2", "--max-len-a", "0", "--max-len-b", "5", "--device", "cpu"]
TIMEOUT = 1800  # seconds for any one command


@dataclass
class Outcome:
    kind: str  # translate, eval or refuse
    what: str
    lines: int
    seconds: float
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "ok" if not self.problems else "FAILED: " + "; ".join(self.problems)
        return f"{self.what:58s} {self.lines:7d} lines {self.seconds:6.1f} s: {verdict}"


def crashed(stderr: bytes) -> bool:
    return b"Traceback (most recent call last)" in stderr or b"Segmentation fault" in stderr


def translate_file(source: Path, output: Path, checkpoint: Path, through_pipe: bool) -> Outcome:
    """Translate `source`: by file names, or through standard input and output."""
    expected = count_lines(source)
    start = time.perf_counter()
    if through_pipe:
        command = [*NMT, "translate", "--checkpoint", str(checkpoint), *DECODING]
        result = run_command(command, timeout=TIMEOUT, input=source.read_bytes())
        output.write_bytes(result.stdout)
    else:
        command = [
            *NMT,
            "translate",
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(source),
            "--output",
            str(output),
        ]
        result = run_command([*command, *DECODING], timeout=TIMEOUT)
    how = "stdin -> stdout" if through_pipe else "file -> file"
    outcome = Outcome(
        "translate",
        f"translate {source.name} ({checkpoint.stem}, {how})",
        expected,
        time.perf_counter() - start,
    )
    if result.returncode != 0 or crashed(result.stderr):
        outcome.problems.append(f"exit {result.returncode}: {tail(result.stderr, 5)}")
    elif count_lines(output) != expected:
        outcome.problems.append(f"{count_lines(output)} output lines for {expected} input lines")
    return outcome


def evaluate_file(
    source: Path, reference: Path, systems: dict[str, Path], report: Path, bootstrap: int
) -> Outcome:
    """`nmt eval` of `systems` on hostile `source` and `reference`: exit 0, every sentence in the report."""
    expected = count_lines(source)
    command = [*NMT, "eval", "--source", str(source), "--reference", str(reference), "--json", str(report)]
    for name, path in systems.items():
        command += ["--system", f"{name}={path}"]
    start = time.perf_counter()
    result = run_command([*command, "--bootstrap", str(bootstrap)], timeout=TIMEOUT)
    outcome = Outcome(
        "eval", f"eval {source.name} ({', '.join(systems)})", expected, time.perf_counter() - start
    )
    if result.returncode != 0 or crashed(result.stderr):
        outcome.problems.append(f"exit {result.returncode}: {tail(result.stderr, 5)}")
        return outcome
    scores = json.loads(report.read_text(encoding="utf-8"))
    counted = sum(bucket["sentences"] for bucket in scores["buckets"])
    if scores["sentences"] != expected or counted != expected:
        outcome.problems.append(f"the report counts {scores['sentences']} sentences ({counted} in buckets)")
    return outcome


def refuse_unequal_counts(source: Path, reference: Path, system: Path, workdir: Path) -> list[Outcome]:
    """`nmt eval` with a reference one line short, then a system one line long: exit 2, one line."""
    lines = source.read_bytes().split(b"\n")[:-1]
    short = workdir / f"short-{reference.name}"
    short.write_bytes(b"".join(line + b"\n" for line in lines[:-1]))
    long = workdir / f"long-{system.name}"
    long.write_bytes(system.read_bytes() + b"one line too many\n")
    cases = {"a reference one line short": (short, system), "a system one line long": (reference, long)}
    outcomes = []
    for what, (ref, hypothesis) in cases.items():
        command = [
            *NMT,
            "eval",
            "--source",
            str(source),
            "--reference",
            str(ref),
            "--system",
            f"s={hypothesis}",
        ]
        start = time.perf_counter()
        result = run_command(command, timeout=TIMEOUT)
        outcome = Outcome("refuse", f"eval refuses {what}", len(lines), time.perf_counter() - start)
        stderr = result.stderr.decode("utf-8", "replace").strip().splitlines()
        if result.returncode != 2:
            outcome.problems.append(f"exit {result.returncode}, not 2: {tail(result.stderr, 5)}")
        elif len(stderr) != 1 or not stderr[0].startswith("error: line counts differ"):
            outcome.problems.append(f"stderr is not one 'error: line counts differ' line: {stderr[:3]}")
        outcomes.append(outcome)
    return outcomes


def run_fuzz(workdir: Path, seed: int, lines: int, files: int, bootstrap: int, report=print) -> list[Outcome]:
    """The whole check; `report(line)` hears of each command as it ends."""
    data = make_toy_data(workdir / "data")
    checkpoints = [tiny_checkpoint(workdir / f"{arch}.pt", data, arch) for arch in ARCHITECTURES]
    rng = random.Random(seed)
    outcomes = []

    def done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        report(outcome.line())

    sizes = [lines // files + (1 if k < lines % files else 0) for k in range(files)]
    for k, size in enumerate(sizes):
        source, reference, noise = (
            workdir / f"{kind}-{k + 1}.txt" for kind in ("source", "reference", "noise")
        )
        for path in (source, reference, noise):
            write_lines(path, hostile_lines(rng, size))
        translation = workdir / f"translation-{k + 1}.txt"
        through_pipe = files > 1 and k == files - 1
        done(translate_file(source, translation, checkpoints[k % len(checkpoints)], through_pipe))
        systems = {"model": translation, "noise": noise}
        done(evaluate_file(source, reference, systems, workdir / f"eval-{k + 1}.json", bootstrap))
    for outcome in refuse_unequal_counts(source, reference, noise, workdir):
        done(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__.split("\n\n")[0])
    options.add_argument("--lines", type=int, default=100_000, help="hostile lines in all (default 100000)")
    options.add_argument("--files", type=int, default=4, help="files they are split into (default 4)")
    options.add_argument("--bootstrap", type=int, default=10, help="nmt eval --bootstrap (default 10)")
    args = options.parse_args(argv)

    def body(workdir: Path) -> list[str]:
        outcomes = run_fuzz(workdir, args.seed, args.lines, args.files, args.bootstrap)
        translated = sum(o.lines for o in outcomes if o.kind == "translate" and not o.problems)
        evaluated = sum(o.lines for o in outcomes if o.kind == "eval" and not o.problems)
        print(f"lines translated with their count kept: {translated}/{args.lines}")
        print(f"lines scored by nmt eval without a crash: {evaluated}/{args.lines}")
        return [f"{o.what}: {'; '.join(o.problems)}" for o in outcomes if o.problems]

    return run_script(args, "fuzz", body)


if __name__ == "__main__":
    sys.exit(main())
