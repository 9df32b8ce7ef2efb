"""nmt.decoding: turning a trained model into translations, samples and scores.

search.py holds greedy and batched beam search, and sampling.py ancestral sampling (temperature, top-k,
top-p), all written once against the model contract (nmt/models/base.py) and never naming a concrete model;
loading.py loads a checkpoint's model, or several as one `nmt.models.ensemble.Ensemble`; translation.py
translates raw text with it (length-sorted batches, SentencePiece in and out, one output line per input line,
n-best lists, attention on request); scoring.py gives the log-probability of given translations (teacher
forcing). Drawing attention is not its job: nmt.plots draws what it returns.

May import: nmt.models.base, nmt.models.ensemble and nmt.models' registry (through nmt.checkpoint), nmt.data,
nmt.config, nmt.errors, nmt.files, nmt.memory, nmt.devices. Never nmt.training, nmt.evaluation, nmt.plots or
the CLI.
"""
