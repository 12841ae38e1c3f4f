"""``--criterion lra_cross_entropy``: the name the official Mega code's LRA and speech command lines
give their classification loss, as fairseq's ``sentence_prediction``.

The official criterion (facebookresearch/mega, fairseq/criterions/lra_cross_entropy.py) sums the
negative log-likelihood of each example's class, divides by the number of examples when
``--sentence-avg`` is given (every official command line gives it) and reports the loss in bits and
the accuracy in percent: ``sentence_prediction``'s math. Without ``--sentence-avg`` it would divide
by the number of input tokens instead, which ``sentence_prediction`` never does: that case is
refused rather than trained with another normalisation.
"""

from dataclasses import dataclass

from fairseq.criterions import register_criterion
from fairseq.criterions.sentence_prediction import SentencePredictionConfig, SentencePredictionCriterion
from omegaconf import II


@dataclass
class LRACrossEntropyConfig(SentencePredictionConfig):
    sentence_avg: bool = II("optimization.sentence_avg")


@register_criterion("lra_cross_entropy", dataclass=LRACrossEntropyConfig)
class LRACrossEntropyCriterion(SentencePredictionCriterion):
    def __init__(self, cfg: LRACrossEntropyConfig, task):
        if not cfg.sentence_avg:
            raise ValueError("--criterion lra_cross_entropy needs --sentence-avg, as in the official command lines "
                             "(the loss per example; without it the official criterion divides by the input tokens)")
        super().__init__(cfg, task)
