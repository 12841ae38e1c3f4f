"""Readers of every input format and the data-preparation code the prepare scripts run
(``python -m mega_fairseq.data.<name>``). Importing the package imports nothing: each module
says what it needs, and none registers fairseq models or tasks."""
