"""Camera probe and PCA picture."""
import numpy as np
import pytest
from PIL import Image

from canu_plugin.evaluation.probes import camera_probe_accuracy, pca_camera_pair


def _data(shift):
    rng = np.random.default_rng(0)
    cams = np.repeat(np.arange(3), 60)
    pids = np.tile(np.arange(20), 9)
    x = rng.normal(size=(180, 8)) + rng.normal(size=(20, 8))[pids]
    x[:, 0] += shift * cams
    return x, cams, pids


def test_probe_finds_a_camera_shift_and_not_its_absence():
    acc, chance = camera_probe_accuracy(*_data(8.0)[:2])
    assert acc > 0.9 and chance == pytest.approx(1 / 3)
    acc0, _ = camera_probe_accuracy(*_data(0.0)[:2])
    assert acc0 < 0.6


def test_probe_bad_input():
    x, c, _ = _data(1.0)
    with pytest.raises(ValueError, match="two cameras"):
        camera_probe_accuracy(x, np.zeros(len(c)))


def test_pca_picture_is_written(tmp_path):
    x, c, p = _data(4.0)
    n = pca_camera_pair(x, c, p, 0, 2, tmp_path / "pca.png", title="test")
    assert n == 120
    img = Image.open(tmp_path / "pca.png")
    assert img.size == (450, 450)


def test_probe_held_out_by_identity_sees_no_identity_twice():
    """Cameras 0 and 1 each hold their own identities: split by image, the probe recognises the
    identities it trained on; split by identity, only a real camera shift could tell them apart."""
    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(40), 6)
    cams = (pids >= 20).astype(int)
    x = rng.normal(size=(40, 64))[pids] + 0.1 * rng.normal(size=(240, 64))  # identity only, no camera shift
    by_image, _ = camera_probe_accuracy(x, cams)
    by_identity, _ = camera_probe_accuracy(x, cams, pids)
    assert by_image > 0.95 and by_identity < 0.8
    shifted = x.copy()
    shifted[:, 0] += 8.0 * cams
    assert camera_probe_accuracy(shifted, cams, pids)[0] > 0.95  # a camera shift is still found
    with pytest.raises(ValueError, match="training side"):
        camera_probe_accuracy(x, np.arange(240) % 2, np.zeros(240))  # one identity: nothing to hold out


def test_target_probe_names_a_small_camera_as_the_release_does():
    """The pseudo-label loop's probe works on camera indices; its warning names the release's camera."""
    from canu_plugin.data.pseudo_labels import TargetSet
    items = [(f"p{i}", f"msmt17_{i % 5}", "msmt17_4" if i < 30 else "msmt17_11") for i in range(60)]
    items.append(("lonely", "msmt17_0", "msmt17_1"))  # files *_02_*: a single image
    target = TargetSet(items)
    assert target.camera_names == ["msmt17 02", "msmt17 05", "msmt17 12"]
    x = np.random.default_rng(0).normal(size=(len(items), 4))
    with pytest.raises(ValueError, match="camera msmt17 02 has 1 image"):
        camera_probe_accuracy(x, target.camids, names=target.camera_names)
