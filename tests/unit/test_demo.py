"""demo/run.py's reading of the translation demo's training logs: the valid curves, the update from
which Mega's stays below the Transformer's, and the updates its tables show."""

from demo.run import crossover, spaced, valid_curves

LOG = """\
2026-12-06 08:01:31 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 11.008 | nll_loss 11.001 | ppl 2049.87 | wps 0 | wpb 1414 | bsz 48 | num_updates 100
2026-12-06 08:01:40 | INFO | train_inner | epoch 001:     50 / 68 loss=10.453, nll_loss=10.294, ppl=1255.85, num_updates=150
2026-12-06 08:02:07 | INFO | valid | epoch 002 | valid on 'valid' subset | loss 9.5 | nll_loss 9.4 | ppl 700.1 | wps 0 | wpb 1414 | bsz 48 | num_updates 200 | best_loss 9.5
"""


def test_valid_curves_of_a_fairseq_log():
    assert valid_curves(LOG) == {"loss": {100: 11.008, 200: 9.5}, "nll_loss": {100: 11.001, 200: 9.4}}


def test_crossover_is_where_mega_stays_below():
    transformer = {100: 5.0, 200: 4.0, 300: 3.0, 400: 2.8}
    assert crossover({100: 6.0, 200: 4.5, 300: 2.9, 400: 2.7}, transformer) == 300
    assert crossover({100: 4.0, 200: 4.5, 300: 2.9, 400: 2.7}, transformer) == 300  # below, above, below again
    assert crossover({100: 4.0, 200: 3.0, 300: 2.0, 400: 1.0}, transformer) == 100
    assert crossover({100: 6.0, 200: 3.0, 300: 2.9, 400: 2.8}, transformer) is None  # equal at the end: not below
    assert crossover({100: 6.0, 500: 1.0}, transformer) is None  # only common validations count


def test_spaced_updates_are_validated_and_end_at_the_last():
    assert spaced(3000, 2) == [1500, 3000]
    assert spaced(3000, 10) == list(range(300, 3001, 300))
    assert spaced(250, 2) == [200, 250]  # multiples of the validation interval, then the last update
    assert spaced(2, 2) == [2]  # fewer updates than one validation interval: the last only
