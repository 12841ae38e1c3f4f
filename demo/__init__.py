"""The demos (``python -m demo --task lm|mt|lra|speech``, ``make demo*``) and the generators of their data:
lm_corpus (English from Python's docstrings), mt_corpus (a synthetic English-German pair), speech_words
(spoken words from espeak-ng). Small models on CPU, no download."""
