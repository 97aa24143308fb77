"""Loss ops: SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss."""
from __future__ import annotations

import torch.nn.functional as F

from .registry import Node, OpFn, converter

_REDUCTIONS = ("none", "sum", "mean")


def _nll_of(node: Node):
    """F.nll_loss with the node's reduction and ignore_index: its weighted mean divides by the weights of the
    targets not ignored, as ONNX does; torch's default ignore_index (-100) never matches a valid class."""
    reduction = node.attr("reduction", "mean")
    if reduction not in _REDUCTIONS:
        raise node.unsupported(f"reduction='{reduction}'")
    ignore_index = int(node.attr("ignore_index", -100))

    def nll(log_prob, target, weight=None):
        if weight is not None:
            weight = weight.to(log_prob.dtype)
        # contiguous: the backward of torch's 4-D kernel (nll_loss2d) rejects a strided input
        return F.nll_loss(log_prob.contiguous(), target.long(), weight=weight, ignore_index=ignore_index,
                          reduction=reduction)

    return nll


@converter("NegativeLogLikelihoodLoss")
def _nll_loss(node: Node) -> OpFn:
    return _nll_of(node)


@converter("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(node: Node) -> OpFn:
    nll = _nll_of(node)
    with_log_prob = node.outputs > 1

    def sce(scores, labels, weights=None):
        log_prob = F.log_softmax(scores, dim=1)
        loss = nll(log_prob, labels, weights)
        return (loss, log_prob) if with_log_prob else loss

    return sce
