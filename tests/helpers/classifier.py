"""What the classifier tests share: the logits fairseq-validate computes, to compare the hub with."""

import torch


@torch.no_grad()
def task_logits(hub, split="test"):
    """The model's logits on the task's own batches of a split (what fairseq-validate computes), in
    the split's order."""
    hub.task.load_dataset(split)
    batches = hub.task.get_batch_iterator(hub.task.dataset(split), max_sentences=5).next_epoch_itr(shuffle=False)
    rows = {}
    for batch in batches:
        for index, row in zip(batch["id"].tolist(), hub.model(**batch["net_input"])[0]):
            rows[index] = row
    return torch.stack([rows[i] for i in range(len(rows))])
