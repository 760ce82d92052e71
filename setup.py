"""Package layout only (everything else is in pyproject.toml).

The configs stay in the repository's ``configs/`` folder (docs and commands name ``configs/...``)
and are installed as the package data ``canu_plugin/configs/``: ``canu_plugin.config_path(name)``
finds them in either place.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["canu_plugin", "canu_plugin.*"]) + ["canu_plugin.configs"],
    package_dir={"canu_plugin.configs": "configs"},
    package_data={"canu_plugin.configs": ["*.yml", "*/*.yml", "*/*/*.yml"]},
)
