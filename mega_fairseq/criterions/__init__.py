"""Criterions of mega_fairseq. Language models train with fairseq's own ``cross_entropy``
and ``adaptive_loss``; task-specific criterions are registered here."""
