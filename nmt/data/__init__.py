"""nmt.data: everything about the text, below every other layer.

special.py holds the special token ids and imports nothing; corpus.py reads and cleans parallel text (local
files and Hugging Face datasets); synthetic.py generates the embedded Ulami-Zerak pair; tokenizer.py trains
and applies SentencePiece; preparation.py is the `nmt prepare` pipeline and recipes.py its recipe files
(data/recipes/*.yaml); the pipeline streams: streaming.py reads a corpus a chunk at a time, dedup.py finds
duplicates by hash, encoding.py is the work done on each chunk (in worker processes) and shards.py writes the
encoded splits as Arrow shards; prepared.py is the prepared-directory format (layout, manifest, reader);
batching.py turns encoded pairs into padded, length-sorted batches.

May import: nmt.config, nmt.errors, nmt.files, numpy, torch (batching only), sentencepiece, datasets and
pyarrow. Never nmt.models, nmt.training, nmt.decoding, nmt.evaluation or the CLI. Importing this package
loads nothing heavy: each module is imported on its own.
"""
