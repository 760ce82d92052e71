"""Models registered into fast-reid's registries on import."""
from canu_plugin.modeling import discriminators, heads  # noqa: F401
from canu_plugin.modeling import meta_arch  # noqa: F401
