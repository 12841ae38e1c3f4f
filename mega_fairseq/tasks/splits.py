"""What the plugin's tasks share about their splits: which one is trained on, and batching that
never leaves out an example of the others."""


class TrainingSplit:
    """Task mixin. ``train_subset`` names the split trained on (``--train-subset``, interpolated into
    the task's config as ``train_subset``); batches of every other dataset hold all its examples.

    This fairseq build drops the last batch of an iterator when its size is not a multiple of
    ``--required-batch-size-multiple`` (default 8; fairseq documents a smaller last batch instead):
    fairseq-validate, fairseq-generate and validation during training would score a split without
    its last few examples. Evaluation has no use for the multiple (a speed setting), so every
    dataset but the training split's is batched with 1. The training split keeps it, and this
    build's behaviour with it: the examples of a partial last batch sit out that epoch."""

    @property
    def train_subset(self) -> str:
        """The training split's name ("train" where the config does not say)."""
        config = self.cfg if self.cfg is not None else getattr(self, "args", None)
        try:
            name = getattr(config, "train_subset", None)
        except Exception:  # an interpolation with no dataset config to resolve it against
            name = None
        if not isinstance(name, str) or not name or name.startswith("${"):
            return "train"
        return name

    def is_training_dataset(self, dataset) -> bool:
        return dataset is not None and dataset is self.datasets.get(self.train_subset)

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, *args, **kwargs):
        if not self.is_training_dataset(dataset):
            required_batch_size_multiple = 1
        return super().get_batch_iterator(dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                                          required_batch_size_multiple, *args, **kwargs)
