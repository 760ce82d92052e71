"""Registry of camera discriminators: ``D(features (B, D), condition (B, D) or None) -> logits (B, C)``."""
from fastreid.utils.registry import Registry

DISCRIMINATOR_REGISTRY = Registry("DISCRIMINATOR")
DISCRIMINATOR_REGISTRY.__doc__ = """Camera discriminators, built as ``cls(cfg, feat_dim, num_cameras, cond_dim)``."""


def build_discriminator(name, cfg, feat_dim, num_cameras, cond_dim=None):
    """Instantiate the discriminator registered as ``name``.

    Args:
        name: registry name, e.g. "ConditionalCameraDiscriminator".
        feat_dim: width D of the features.
        num_cameras: C, the number of output classes.
        cond_dim: width of the conditioning vector (default ``feat_dim``).
    """
    return DISCRIMINATOR_REGISTRY.get(name)(cfg, feat_dim, num_cameras, cond_dim or feat_dim)
