"""Readers of every input format and the data-preparation code the prepare scripts run
(``python -m mega_fairseq.data.<name>``)."""
