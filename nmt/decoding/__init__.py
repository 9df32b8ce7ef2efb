"""nmt.decoding: turning a trained model into translations.

search.py holds greedy and batched beam search, written once against the model contract
(nmt/models/base.py) and never naming a concrete model; translation.py translates raw text with a checkpoint
(length-sorted batches, SentencePiece in and out, one output line per input line, n-best lists, attention on
request). Drawing attention is not its job: nmt.plots draws what it returns.

May import: nmt.models.base and nmt.models' registry (through nmt.checkpoint), nmt.data, nmt.config,
nmt.errors, nmt.files, nmt.memory, nmt.devices. Never nmt.training, nmt.evaluation, nmt.plots or the CLI.
"""
