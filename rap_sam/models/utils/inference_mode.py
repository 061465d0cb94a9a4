"""Kept for callers not yet switched to :func:`rap_sam.deploy.prepare`."""


def optimize_for_inference(model, compile: bool = False):
    """``rap_sam.deploy.prepare(model, 'fast', compile=compile)``."""
    from rap_sam.deploy import prepare
    return prepare(model, 'fast', compile=compile)
