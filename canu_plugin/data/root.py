"""Where the datasets live: fast-reid's dataset root (``$FASTREID_DATASETS``), read and set in one place."""
import os

import fastreid.data.build as fastreid_build


def datasets_root():
    """The dataset root fast-reid's loaders read (``$FASTREID_DATASETS`` at import, default ``datasets``)."""
    return fastreid_build._root


def set_datasets_root(path):
    """Point fast-reid's loaders (and child processes, via ``$FASTREID_DATASETS``) at ``path``.

    fast-reid reads the variable once, when ``fastreid.data.build`` is imported.
    """
    path = os.path.abspath(path)
    os.environ["FASTREID_DATASETS"] = path
    fastreid_build._root = path


__all__ = ["datasets_root", "set_datasets_root"]
