"""Reliability at scale: scripts run once in full by `make stress`, each also run small by the suite.

    kill_train.py   kill -9 at random moments of `nmt train`, then resume: bitwise the uninterrupted run
    fuzz_io.py      100,000 hostile lines through `nmt translate` and `nmt eval`: no crash, line counts kept
    ddp_failure.py  a data-parallel run loses a process: the others end with one line, --resume continues
    two_nodes.py    two torchrun "nodes" on this machine train exactly as one process with the same batch

Each is a command (`python tests/stress/NAME.py --help`) and a library of the functions the tests call.
"""
