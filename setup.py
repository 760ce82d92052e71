"""canu-plugin: camera-invariant unsupervised person re-ID (CANU-ReID, ACAN) as a fast-reid plugin.

fastreid 1.4.0 pins torch==1.13.1, which has no build for Python 3.11; it is therefore installed
with ``pip install --no-deps fastreid==1.4.0`` (the Makefile does it) and is not listed below.
``import canu_plugin`` checks for it and says how to install it when it is missing.
"""
from setuptools import find_packages, setup

setup(
    name="canu-plugin",
    version="0.1.0",
    description="Camera-invariant unsupervised person re-ID (CANU-ReID, ACAN) for fast-reid",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["canu_plugin", "canu_plugin.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=1.13",
        "torchvision>=0.14",
        "numpy",
        "scipy",
        "scikit-learn>=1.2",
        "yacs>=0.1.8,<0.2",
        # fastreid 1.4.0's own run-time needs (installed here because fastreid is --no-deps)
        "opencv-python-headless>=4.7,<5",
        "tabulate>=0.9,<0.10",
        "termcolor>=2.2,<3",
        "tensorboard>=2.12,<3",
        "Pillow",
        "matplotlib",
    ],
    extras_require={
        "cpu": ["faiss-cpu>=1.7.3"],
        "gpu": ["faiss-gpu"],
        "test": ["pytest>=7", "pytest-timeout", "faiss-cpu>=1.7.3"],
    },
)
