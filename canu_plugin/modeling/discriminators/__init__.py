"""Camera discriminators (CANU-ReID's conditional and unconditional ones, ACAN's FC head),
registered in :data:`DISCRIMINATOR_REGISTRY`."""
from canu_plugin.modeling.discriminators.build import DISCRIMINATOR_REGISTRY, build_discriminator
from canu_plugin.modeling.discriminators import camera  # noqa: F401  (registers)

__all__ = ["DISCRIMINATOR_REGISTRY", "build_discriminator"]
