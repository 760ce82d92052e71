"""fast-reid dataset registry entries for the synthetic domains, and layout checks for every dataset.

``SynthA`` / ``SynthB`` (written by :mod:`canu_plugin.data.synthetic`) are fast-reid ``Market1501``
subclasses: configs name them like Market1501 (``DATASETS.NAMES ("SynthA",)``) and fast-reid's own
parser reads their files. What they add: clear errors for a missing folder or a file name the
parser cannot read, and lists sorted by path (glob order is not deterministic).

:func:`check_dataset_layout` gives the same early, clear errors for the real datasets
(Market1501, DukeMTMC, MSMT17) without registering anything under fast-reid's own names.
``MSMT17TrainVal`` is MSMT17 with its validation list in the training set (MMT's recipes).
"""
import glob
import os
import re
import warnings

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.market1501 import Market1501
from fastreid.data.datasets.msmt17 import MSMT17

from canu_plugin.errors import CanuError, unreadable_image

NAME_PATTERN = re.compile(r"([-\d]+)_c(\d)")  # fast-reid's Market1501 / DukeMTMC file-name pattern
EXPECTED_NAME = ("<pid>_c<cam>s<seq>_<frame>_<box>.jpg, e.g. 0002_c1s1_000451_03.jpg "
                 "(pid: 4 digits, -1 = junk, 0 = distractor; cam: one digit from 1)")
MARKET_SPLITS = ("bounding_box_train", "query", "bounding_box_test")
MARKET_V15 = "Market-1501-v15.09.15"
MSMT_VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
MSMT_LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")


def check_image_names(folder, max_cam, pid_range=None, fix=""):
    """Raise CanuError unless ``folder`` holds .jpg files whose names fast-reid's Market-style parser
    reads: ``([-\\d]+)_c(\\d)`` found in the file name (and not earlier in the path, since fast-reid
    searches the whole path), an integer pid in ``pid_range`` (inclusive, or -1), 1 <= cam <= max_cam.

    ``fix`` (optional) is appended to the error message. Returns the number of images.
    """
    paths = glob.glob(os.path.join(folder, "*.jpg"))
    if not paths:
        raise CanuError(f"no .jpg images in {folder}: the folder must hold images named {EXPECTED_NAME}"
                        + (f"; {fix}" if fix else ""))
    for path in sorted(paths):
        match = NAME_PATTERN.search(os.path.basename(path))
        problem = None
        if match is None:
            problem = "its name does not contain <pid>_c<cam>"
        elif NAME_PATTERN.search(path).groups() != match.groups():
            problem = ("fast-reid searches the whole path for <pid>_c<cam> and finds "
                       f"{NAME_PATTERN.search(path).group(0)!r} in a folder name first; move the dataset to a "
                       "folder whose path has no '<digits>_c<digit>'")
        elif not re.fullmatch(r"-?\d+", match.group(1)):
            problem = f"its pid {match.group(1)!r} is not an integer"
        elif pid_range and int(match.group(1)) != -1 and not pid_range[0] <= int(match.group(1)) <= pid_range[1]:
            problem = f"its pid {int(match.group(1))} is outside {pid_range[0]}..{pid_range[1]}"
        elif not 1 <= int(match.group(2)) <= max_cam:
            problem = f"its camera {match.group(2)} is outside 1..{max_cam}"
        if problem:
            raise CanuError(f"cannot read image {path}: {problem}. Expected names: {EXPECTED_NAME}"
                            + (f"; {fix}" if fix else ""))
    return len(paths)


def _require(path, fix, kind="folder"):
    """Raise CanuError naming ``path`` and ``fix`` when it does not exist."""
    exists = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
    if not exists:
        raise CanuError(f"missing {kind} {path}: {fix}")


def _check_market_like(base, fix, max_cam, pid_range, allow_v15, check_names):
    """Folders (and optionally file names) of a Market-1501-style dataset rooted at ``base``."""
    _require(base, fix)
    if allow_v15 and os.path.isdir(os.path.join(base, MARKET_V15)):
        base = os.path.join(base, MARKET_V15)  # fast-reid's Market1501 prefers this subfolder
    for split in MARKET_SPLITS:
        _require(os.path.join(base, split), fix)
    if check_names:
        for split in MARKET_SPLITS:
            check_image_names(os.path.join(base, split), max_cam, pid_range, fix)


def _check_msmt(root, fix):
    """Folders and list files fast-reid's MSMT17 parser opens (it takes MSMT17_V1 first, then V2)."""
    for version, (train, test) in MSMT_VERSIONS.items():
        if os.path.exists(os.path.join(root, version)):
            break
    else:
        raise CanuError(f"missing folder {os.path.join(root, 'MSMT17_V2')} (or MSMT17_V1): {fix}")
    for folder in (train, test):
        _require(os.path.join(root, version, folder), fix)
    for name in MSMT_LISTS:
        _require(os.path.join(root, version, name), fix, kind="file")


def _synth_fix(root, name, again=False):
    """How to generate (``again``: regenerate) a synthetic domain."""
    flag, verb = (" --overwrite", "regenerate") if again else ("", "generate")
    args = f"--root {root} --domains {name}{flag}"
    return f"run `canu-synth {args}` (in a checkout: `python tools/make_synthetic.py {args}`) to {verb} it"


def check_dataset_layout(name, root, check_names=True):
    """Raise CanuError (the problem and the fix) when dataset ``name`` is not laid out under ``root``
    the way fast-reid's parser expects; do nothing for names this function does not know.

    Knows Market1501 (``root/[Market-1501-v15.09.15/]{bounding_box_train,query,bounding_box_test}``),
    DukeMTMC (``root/DukeMTMC-reID/...``), MSMT17 and MSMT17TrainVal (``root/MSMT17_V1|MSMT17_V2`` with
    list files) and
    every :class:`SynthDomain` (``root/<name>/...``). ``check_names`` also validates Market-style
    image names (what fast-reid would crash on with ``'NoneType' object has no attribute 'groups'``).
    Tracklet datasets (``is_video``: MARS, ...) run their own ``check_layout(root)``.
    """
    root = os.fspath(root)
    try:
        cls = DATASET_REGISTRY.get(name)
    except KeyError:
        return
    if getattr(cls, "is_video", False):  # tracklet datasets (canu_plugin.data.video) check their own layout
        cls.check_layout(root)
        return
    where = (f"point the run at the folder that holds {name}: --root DIR (canu-train, canu-bench) or "
             "FASTREID_DATASETS=DIR")
    if isinstance(cls, type) and issubclass(cls, SynthDomain):
        fix = _synth_fix(root, name)
        _check_market_like(os.path.join(root, cls.dataset_dir), fix, 6, (0, 1501), True, check_names)
    elif name == "Market1501":
        fix = (f"put Market-1501 at {os.path.join(root, MARKET_V15)}/{{{','.join(MARKET_SPLITS)}}} "
               f"(or those folders directly in {root}), or {where}")
        _check_market_like(root, fix, 6, (0, 1501), True, check_names)
    elif name == "DukeMTMC":
        base = os.path.join(root, "DukeMTMC-reID")
        fix = f"put DukeMTMC-reID at {base}/{{{','.join(MARKET_SPLITS)}}}, or {where}"
        _check_market_like(base, fix, 8, None, False, check_names)
    elif isinstance(cls, type) and issubclass(cls, MSMT17):
        fix = (f"put MSMT17 at {os.path.join(root, 'MSMT17_V2')}/{{mask_train_v2,mask_test_v2,"
               f"{','.join(MSMT_LISTS)}}} (V1: MSMT17_V1 with train, test), or {where}")
        _require(root, fix)
        _check_msmt(root, fix)


def train_items(names, root, combineall=False, show=True):
    """fast-reid's training items ``(path, pid, camid)`` of every dataset in ``names``, in order.

    Args:
        names: dataset names registered in DATASET_REGISTRY (``DATASETS.NAMES``).
        root: dataset root; combineall: ``DATASETS.COMBINEALL``; show: print fast-reid's table (rank 0).
    """
    from fastreid.utils import comm
    items = []
    for name in names:
        check_dataset_layout(name, root)
        data = DATASET_REGISTRY.get(name)(root=root, combineall=combineall)
        if show and comm.is_main_process():
            data.show_train()
        items.extend(data.train)
    return items


def test_items(name, root, show=False):
    """fast-reid's (query, gallery) item lists ``(path, pid, camid)`` of test set ``name``."""
    from fastreid.utils import comm
    check_dataset_layout(name, root)
    data = DATASET_REGISTRY.get(name)(root=root)
    if show and comm.is_main_process():
        data.show_test()
    return data.query, data.gallery


def check_images_readable(paths):
    """Open the header of every image (cheap: no decoding), so that a missing or corrupt file stops
    the run before training rather than at the first evaluation.

    Raises:
        CanuError: naming the first unreadable file and the fix.
    """
    from PIL import Image
    for path in paths:
        try:
            with Image.open(path) as img:
                img.size  # noqa: B018  (reading the header is the check)
        except (OSError, ValueError, SyntaxError) as e:
            raise unreadable_image(path, e) from e


class SynthDomain(Market1501):
    """Base of the synthetic domains: fast-reid's Market1501 parser, plus clear errors for missing
    folders and unreadable file names, and train/query/gallery lists sorted by image path.

    Items are fast-reid's: ``(path, "<dataset_name>_<pid>", "<dataset_name>_<camid>")`` for train,
    ``(path, pid, camid)`` (ints, camid 0-based) for query and gallery. Not registered itself.
    """
    dataset_dir = ""
    dataset_name = "synth"

    def __init__(self, root="datasets", **kwargs):
        check_dataset_layout(type(self).__name__, root, check_names=False)
        with warnings.catch_warnings():  # no Market-1501-v15.09.15 subfolder here, by design
            warnings.filterwarnings("ignore", message="The current data structure is deprecated")
            super().__init__(root=root, **kwargs)

    def process_dir(self, dir_path, is_train=True):
        """fast-reid's parser on ``dir_path`` after checking every file name; sorted by path."""
        fix = _synth_fix(self.root, type(self).__name__, again=True)
        check_image_names(dir_path, max_cam=6, pid_range=(0, 1501), fix=fix)
        return sorted(super().process_dir(dir_path, is_train=is_train), key=lambda item: item[0])


@DATASET_REGISTRY.register()
class SynthA(SynthDomain):
    """Synthetic domain A (summer, 6 cameras): ``<root>/SynthA``, from tools/make_synthetic.py."""
    dataset_dir = "SynthA"
    dataset_name = "syntha"


@DATASET_REGISTRY.register()
class SynthB(SynthDomain):
    """Synthetic domain B (winter, 5 cameras): ``<root>/SynthB``, from tools/make_synthetic.py."""
    dataset_dir = "SynthB"
    dataset_name = "synthb"


@DATASET_REGISTRY.register()
class MSMT17TrainVal(MSMT17):
    """MSMT17 whose training set is ``list_train.txt`` + ``list_val.txt`` (1,041 identities, 32,621
    images), as MMT's ``msmt17.py`` trains; query and gallery are fast-reid's ``MSMT17``'s. fast-reid's
    ``MSMT17`` trains on ``list_train.txt`` alone (30,248 images) and adds the validation list only with
    ``DATASETS.COMBINEALL``, which also puts the query and gallery into training.
    """

    def __init__(self, root="datasets", **kwargs):
        if kwargs.get("combineall"):
            raise CanuError("MSMT17TrainVal already trains on list_train.txt + list_val.txt, and DATASETS.COMBINEALL "
                            "would add list_val.txt a second time (and the query and gallery): name MSMT17 in "
                            "DATASETS.NAMES with COMBINEALL, or set DATASETS.COMBINEALL False")
        super().__init__(root=root, **kwargs)

    def process_dir(self, dir_path, list_path, is_train=True):
        """fast-reid's parser; the training list is followed by the validation list (same folder, same
        identities' labels)."""
        items = super().process_dir(dir_path, list_path, is_train=is_train)
        if list_path == self.list_train_path:
            items += super().process_dir(dir_path, self.list_val_path, is_train=is_train)
        return items


PRETRAIN_DOMAINS = 8  # SynthPre0 .. SynthPre7: the pre-training set-ups (canu_plugin.bench.pretrain), style SynthPre
for _k in range(PRETRAIN_DOMAINS):
    DATASET_REGISTRY.register(type(f"SynthPre{_k}", (SynthDomain,), {
        "__doc__": f"Pre-training domain {_k} (the ImageNet stand-in): ``<root>/SynthPre{_k}``.",
        "dataset_dir": f"SynthPre{_k}", "dataset_name": f"synthpre{_k}", "__module__": __name__}))
