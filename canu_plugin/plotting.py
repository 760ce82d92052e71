"""matplotlib for files, not screens: the one place that selects the Agg backend."""


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (PNG files, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


__all__ = ["pyplot"]
