"""Loss ops: SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss."""
from __future__ import annotations
