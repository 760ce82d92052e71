"""Datasets (registered in fast-reid's DATASET_REGISTRY on import) and the synthetic generator."""
from canu_plugin.data import datasets  # noqa: F401  (registers SynthA, SynthB)
from canu_plugin.data import video  # noqa: F401,E402  (registers MARS, DukeMTMC video sets, SynthVidA/B)
