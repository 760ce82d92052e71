"""Gradient reversal (Ganin & Lempitsky 2015): identity forward, gradient times ``-scale`` backward."""
import torch


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x, scale=1.0):
    """Identity on ``x`` (any shape); its gradient is multiplied by ``-scale`` on the way back."""
    return _GradReverse.apply(x, float(scale))
