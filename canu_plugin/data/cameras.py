"""Cameras as the releases name them, for logs and errors.

fast-reid's parsers turn a file's camera into a 0-based index, and its train lists prefix it with
the dataset's ``dataset_name`` ("msmt17_4" for MSMT17's ``*_05_*`` files, "mars_0" for MARS's
``C1``). :func:`camera_name` turns such a camera id back into the name in the release's file names.
"""
import re

from canu_plugin.data.labels import natural_key

# fast-reid ``dataset_name`` -> the release's camera name of the 1-based camera number
RELEASE_CAMERA_NAMES = {
    "market1501": "c{}",            # 0002_c1s1_000451_03.jpg
    "dukemtmc": "c{}",              # 0005_c2_f0046985.jpg
    "msmt17": "{:02d}",             # 0000_000_01_0303morning_0015_0.jpg (third field)
    "mars": "C{}",                  # 0001C1T0001F001.jpg
    "dukemtmcvidreid": "C{}",       # 0001_C6_F0099_X30823.jpg
    "dukemtmcsitracklet": "C{}",
    "syntha": "c{}", "synthb": "c{}",        # Market-1501 names (canu_plugin.data.synthetic)
    "synthvida": "C{}", "synthvidb": "C{}",  # MARS names
}
_TRAIN_CAMID = re.compile(r"(.+)_(\d+)")


def camera_name(camid, dataset_name=None):
    """The camera as its release names it, e.g. ``"msmt17 05"`` for ``"msmt17_4"``,
    ``"market1501 c1"`` for ``"market1501_0"``, ``"mars C1"`` for ``("mars", 0)``.

    Args:
        camid: a train-list camera id ``"<dataset_name>_<0-based index>"``, or a 0-based int with
            ``dataset_name`` (query / gallery items).
    Returns:
        str; ``str(camid)`` for a dataset whose naming is not known.
    """
    if dataset_name is None:
        match = _TRAIN_CAMID.fullmatch(str(camid))
        if match is None:
            return str(camid)
        dataset_name, camid = match.group(1), match.group(2)
    fmt = RELEASE_CAMERA_NAMES.get(str(dataset_name).lower())
    if fmt is None or not str(camid).lstrip("-").isdigit():
        return f"{dataset_name}_{camid}"
    return f"{dataset_name} {fmt.format(int(camid) + 1)}"


def camera_names(camids):
    """``camera_name`` of every camid, in natural order, joined by ", "."""
    return ", ".join(camera_name(c) for c in sorted(camids, key=natural_key))


__all__ = ["RELEASE_CAMERA_NAMES", "camera_name", "camera_names"]
