"""Two torchrun "nodes" on this machine train exactly as one process with the same global batch.

The multi-node launch that a cluster user types, run twice on localhost, one process per node:

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT --rdzv-id ID ...
    torchrun --nnodes 2 --nproc-per-node 1 --node-rank R --master-addr 127.0.0.1 --master-port PORT ...

(the first, elastic rendezvous; the second, static). Each update of the 2 ranks takes 2 consecutive batches
of the epoch's order, one per rank, as one process with --accumulate 2 does; their last.pt and best.pt must
hold the same weights, optimizer state and progress, bitwise. The models have no dropout (the tiny presets):
with dropout, each rank draws its own masks, which one process cannot reproduce.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stress.common import (  # noqa: E402
    NMT,
    ROOT,
    child_environment,
    free_port,
    make_toy_data,
    parser,
    run_command,
    run_script,
    state_differences,
    stop_process,
    tail,
    torchrun,
)

ARCHITECTURES = ("rnn", "rnnsearch", "transformer")
RENDEZVOUS = ("c10d", "static")
TIMEOUT = 600  # seconds for any one run


@dataclass
class Comparison:
    arch: str
    rendezvous: str
    seconds: float = 0.0  # of the two-node run
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "bitwise equal" if not self.problems else "FAILED: " + "; ".join(self.problems)
        return f"{self.arch:11s} {self.rendezvous:6s} rendezvous, 2 nodes ({self.seconds:.0f} s): {verdict}"


def train_args(data: Path, out: Path, arch: str, steps: int) -> list[str]:
    return [
        "train", "--data", str(data), "--model", arch, "--preset", "tiny", "--max-steps", str(steps),
        "--save-every", "5", "--validate-every", "10", "--dev-sentences", "8", "--seed", "5",
        "--device", "cpu", "--out", str(out),
    ]  # fmt: skip


def node_command(node: int, rendezvous: str, port: int, run_id: str) -> list[str]:
    """torchrun for node `node` of 2, one process each, meeting at 127.0.0.1:port."""
    command = [str(torchrun()), "--nnodes", "2", "--nproc-per-node", "1"]
    if rendezvous == "c10d":  # the ranks are given out in the order the nodes join: --node-rank is not used
        command += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", run_id]
    else:
        command += ["--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", str(port)]
    return [*command, "-m", "nmt.cli.main"]


def run_two_nodes(args: list[str], rendezvous: str, logs: Path) -> list[str]:
    """Start both nodes, wait for both; the problems (empty when both exited 0)."""
    port, run_id = free_port(), f"nmt-{rendezvous}-{time.monotonic_ns()}"
    nodes = []
    for node in range(2):
        with open(logs.with_name(f"{logs.name}-node{node}.log"), "wb") as output:
            nodes.append(
                subprocess.Popen(
                    [*node_command(node, rendezvous, port, run_id), *args],
                    cwd=ROOT,
                    env=child_environment(),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    problems = []
    try:
        for node, process in enumerate(nodes):
            try:
                process.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"node {node} did not end within {TIMEOUT} s")
    finally:
        for process in nodes:
            stop_process(process)
    for node, process in enumerate(nodes):
        if process.returncode != 0 and not problems:
            log = logs.with_name(f"{logs.name}-node{node}.log").read_bytes()
            problems.append(f"node {node} exited {process.returncode}: {tail(log, 5)}")
    return problems


def compare(workdir: Path, data: Path, arch: str, rendezvous: str, steps: int) -> Comparison:
    """The two-node run of `arch` against one process with --accumulate 2 (run once per architecture)."""
    comparison = Comparison(arch, rendezvous)
    single = workdir / f"{arch}-one-process"
    if not (single / "last.pt").is_file():
        result = run_command(
            [*NMT, *train_args(data, single, arch, steps), "--accumulate", "2"], timeout=TIMEOUT
        )
        if result.returncode != 0:
            comparison.problems.append(f"one process failed: {tail(result.stderr, 5)}")
            return comparison
    nodes = workdir / f"{arch}-two-nodes-{rendezvous}"
    start = time.perf_counter()
    comparison.problems += run_two_nodes(train_args(data, nodes, arch, steps), rendezvous, nodes)
    comparison.seconds = time.perf_counter() - start
    if comparison.problems:
        return comparison
    saved = torch.load(nodes / "last.pt", map_location="cpu", weights_only=True)["train_state"]
    if saved["world_size"] != 2:
        comparison.problems.append(f"last.pt was written by {saved['world_size']} process(es), not 2")
    for name in ("last.pt", "best.pt"):
        found = state_differences(nodes / name, single / name)
        if found:
            comparison.problems.append(f"{len(found)} differences, first {', '.join(found[:3])}")
    return comparison


def run_comparisons(
    workdir: Path, archs: list[str], rendezvous: list[str], steps: int, report=print
) -> list[Comparison]:
    data = make_toy_data(workdir / "data")
    comparisons = []
    for arch in archs:
        for form in rendezvous:
            comparisons.append(compare(workdir, data, arch, form, steps))
            report(comparisons[-1].line())
    return comparisons


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__.split("\n\n")[0])
    options.add_argument("--steps", type=int, default=20, help="updates of each run (default 20)")
    options.add_argument("--models", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    options.add_argument("--rendezvous", nargs="+", default=list(RENDEZVOUS), choices=RENDEZVOUS)
    args = options.parse_args(argv)
    if torchrun() is None:
        print("SKIPPED: torchrun is not installed")
        return 0

    def body(workdir: Path) -> list[str]:
        comparisons = run_comparisons(workdir, args.models, args.rendezvous, args.steps)
        passed = sum(not c.problems for c in comparisons)
        print(f"two nodes equal to one process with --accumulate 2, bitwise: {passed}/{len(comparisons)}")
        return [f"{c.arch} {c.rendezvous}: {'; '.join(c.problems)}" for c in comparisons if c.problems]

    return run_script(args, "nodes", body)


if __name__ == "__main__":
    sys.exit(main())
