"""Offline conversion of the official Mega code's checkpoints (facebookresearch/mega) into this
plugin's: the command (:mod:`.convert`, run as ``scripts/convert_official_checkpoint.py``), the
classifier tensors (:mod:`.classifier`) and the training arguments (:mod:`.arguments`). The
parameter-name map itself lives beside the models (:mod:`mega_fairseq.models.official_names`)."""
