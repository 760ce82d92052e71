"""Where the plugin's configs are: ``config_path(name)``, the one function that finds them.

The configs live in the repository's ``configs/`` folder and are installed with the package as
``canu_plugin/configs/`` (setup.py maps one onto the other), so the same name works from a source
checkout, an editable install and a wheel. fast-reid's ``_BASE_`` includes are relative to the
including file, so they resolve inside whichever copy was found.

Imports nothing from fast-reid or torch.
"""
import difflib
import os

from canu_plugin.errors import CanuError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PREFIX = "configs/"


def config_roots():
    """Folders that hold the plugin's configs, in search order.

    Returns:
        list[str]: the installed package data ``canu_plugin/configs`` (a wheel) and the source
        tree's ``configs/`` (a checkout or an editable install), those that exist.
    """
    installed = os.path.join(PACKAGE_DIR, "configs")
    repo = os.path.dirname(PACKAGE_DIR)
    source = os.path.join(repo, "configs")
    roots = [installed]
    if os.path.isfile(os.path.join(repo, "pyproject.toml")):  # our checkout, not some site-packages/configs
        roots.append(source)
    return [r for r in roots if os.path.isdir(r)]


def list_configs():
    """Every shipped config, as repository-relative names (``configs/synthetic/quick_sup.yml``)."""
    names = set()
    for root in config_roots():
        for folder, _, files in os.walk(root):
            rel = os.path.relpath(folder, root)
            names.update(_PREFIX + os.path.normpath(os.path.join(rel, f)).replace(os.sep, "/")
                         for f in files if f.endswith((".yml", ".yaml")))
    return sorted(names)


def config_path(name, user_paths=True):
    """Absolute path of a config file.

    Args:
        name: a path to an existing file (it wins), or a shipped config's name, with or without
            the leading ``configs/``: ``configs/synthetic/quick_sup.yml``, ``synthetic/quick_sup.yml``.
        user_paths: False looks at the shipped configs only (the benchmark's own names).
    Raises:
        CanuError: no such file; the message lists where it looked and the closest shipped names.
    """
    if not name:
        raise CanuError("no config file given: pass --config-file with a .yml path or a shipped config "
                        "name, e.g. configs/synthetic/quick_sup.yml")
    name = os.path.expanduser(str(name))
    tried = []
    if user_paths or os.path.isabs(name):
        tried.append(os.path.abspath(name))
        if os.path.isfile(name):
            return os.path.abspath(name)
    rel = name.replace(os.sep, "/")
    rel = rel[len(_PREFIX):] if rel.startswith(_PREFIX) else rel
    if not os.path.isabs(name):
        for root in config_roots():
            candidate = os.path.join(root, *rel.split("/"))
            tried.append(candidate)
            if os.path.isfile(candidate):
                return candidate
    close = difflib.get_close_matches(_PREFIX + rel, list_configs(), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    looked = ", ".join(dict.fromkeys(tried))
    raise CanuError(f"config file {name!r} not found; looked at {looked}.{hint} Pass the path of a "
                    "yml, or the name of a shipped config such as configs/synthetic/quick_sup.yml.")
