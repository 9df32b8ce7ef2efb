"""nmt.training: training a model on a prepared data directory.

    result = train(data_dir, "transformer", model_config, train_config, run_dir)

run.py is the entry point (`train`, `resolve_configs`, and `train_from_settings`: `nmt train` as a
function); setup.py what a run is set up with (the data, the model, its optimizer, a restored state);
trainer.py the loop and nothing else; update.py one optimizer update (loss, accumulation, out-of-memory
halving, clipping, non-finite skip), which the benchmark calls too; validation.py dev loss and BLEU;
limits.py when to stop; state.py what a checkpoint holds of training; schedules.py the learning rate;
run_files.py the run directory; distributed.py data parallelism; averaging.py checkpoint averaging.

Imports: nmt.models, nmt.data, nmt.decoding.search (greedy decoding for dev BLEU), nmt.checkpoint and the
small shared modules; never nmt.evaluation, nmt.benchmark or the CLI.
"""

from nmt.training.run import ResumePoint, resolve_configs, resume_point, train, train_from_settings
from nmt.training.trainer import TrainResult

__all__ = ["ResumePoint", "TrainResult", "resolve_configs", "resume_point", "train", "train_from_settings"]
