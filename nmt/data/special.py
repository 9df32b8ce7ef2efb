"""The special token ids, defined here and nowhere else.

SentencePiece is trained to use exactly these ids (nmt/data/tokenizer.py), so token ids mean the same in the
data files, the models and the checkpoints. This module imports nothing, so that the models can know the ids
without loading SentencePiece.
"""

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID}
