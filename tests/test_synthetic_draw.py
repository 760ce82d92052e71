"""canu_plugin.data.synthetic_draw: a person's attributes and a camera's set-up drive the pixels."""
import numpy as np
import pytest

from canu_plugin.data.synthetic import DOMAIN_PRESETS, sample_camera, sample_identity
from canu_plugin.data.synthetic_draw import render

STYLE = DOMAIN_PRESETS["SynthA"]
SIZE = (64, 32)


def person(**attrs):
    """A plain person (no pattern, no bag) with the given attributes overridden."""
    ident = sample_identity(np.random.default_rng(0), STYLE)
    ident.update(pattern=0, bag=0)
    ident.update({k: np.asarray(v, float) if isinstance(v, list) else v for k, v in attrs.items()})
    return ident


def camera(**fields):
    """The domain's neutral camera (strength 0: no cast, blur or texture), then ``fields``."""
    cam = sample_camera(np.random.default_rng(0), STYLE, 0.0)
    cam.update(p_back=0.0, p_mirror=0.0)
    cam.update({k: np.asarray(v, float) if isinstance(v, list) else v for k, v in fields.items()})
    return cam


def draw(ident, cam, seed=0, partial=False):
    """render() with a fixed per-image seed, as float RGB (H, W, 3)."""
    return render(ident, cam, STYLE, np.random.default_rng(seed), SIZE, partial=partial).astype(float)


def torso(img):
    """Mean RGB (3,) of the chest area."""
    return img[int(0.3 * SIZE[0]):int(0.45 * SIZE[0]), SIZE[1] // 2 - 3:SIZE[1] // 2 + 3].reshape(-1, 3).mean(0)


def test_deterministic_shape_and_per_image_jitter():
    ident, cam = person(), camera()
    a = render(ident, cam, STYLE, np.random.default_rng(5), SIZE)
    assert a.dtype == np.uint8 and a.shape == (64, 32, 3)
    assert np.array_equal(a, render(ident, cam, STYLE, np.random.default_rng(5), SIZE))
    assert np.abs(a.astype(float) - draw(ident, cam, seed=6)).mean() > 2  # same id, another image


@pytest.mark.parametrize("colour, channel", [([0.9, 0.1, 0.1], 0), ([0.1, 0.8, 0.1], 1), ([0.1, 0.1, 0.9], 2)])
def test_upper_colour_shows_on_the_torso(colour, channel):
    mean = torso(draw(person(upper=colour), camera()))
    assert mean.argmax() == channel and mean[channel] > mean.min() + 80


def test_camera_colour_cast_and_blur():
    ident = person(upper=[0.6, 0.6, 0.6])
    plain, warm = draw(ident, camera()), draw(ident, camera(gains=[1.3, 1.0, 0.7]))
    assert torso(warm)[0] - torso(warm)[2] > torso(plain)[0] - torso(plain)[2] + 50
    sharp, blurred = draw(ident, camera(noise=0.0)), draw(ident, camera(noise=0.0, blur=4.0))  # sigma 2 px at H=64
    detail = lambda img: np.abs(np.diff(img, axis=1)).mean()
    assert detail(blurred) < 0.7 * detail(sharp)


def test_back_view_shows_the_backpack_and_mirror_flips():
    ident = person(bag=1, upper=[0.9, 0.9, 0.9], bag_colour=[0.1, 0.1, 0.6])
    front, back = draw(ident, camera()), draw(ident, camera(p_back=1.0))
    assert torso(back)[2] > torso(back)[0] + 40 and torso(front)[0] > 150  # backpack covers the chest
    bag = person(bag=2, bag_colour=[0.1, 0.1, 0.1], upper=[0.9, 0.9, 0.9])
    left, right = draw(bag, camera()), draw(bag, camera(p_mirror=1.0))
    assert np.abs(left[:, ::-1] - right).mean() < 0.3 * np.abs(left - right).mean()


def test_partial_person_is_pushed_out_of_the_centre():
    ident = person(upper=[0.9, 0.1, 0.1])
    full, part = draw(ident, camera()), draw(ident, camera(), partial=True)
    def offset(img):  # distance of the red torso's centre of mass from the image's centre column
        red = np.clip(img[..., 0] - img[..., 2] - 60, 0, None).sum(0)
        return abs((red * np.arange(SIZE[1])).sum() / red.sum() - (SIZE[1] - 1) / 2)
    assert offset(full) < 3 and offset(part) > 7
