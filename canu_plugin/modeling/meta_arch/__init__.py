"""Meta-architectures registered in fast-reid's META_ARCH_REGISTRY."""
from canu_plugin.modeling.meta_arch.pseudo_baseline import PseudoBaseline  # noqa: F401
from canu_plugin.modeling.meta_arch.acan import ACAN  # noqa: F401
from canu_plugin.modeling.meta_arch.ssg import SSG  # noqa: F401
from canu_plugin.modeling.meta_arch.mmt import MMT  # noqa: F401
