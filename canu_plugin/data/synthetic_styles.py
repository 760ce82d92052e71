"""Appearance presets of the synthetic domains (:mod:`canu_plugin.data.synthetic`): clothing palettes,
backgrounds, lighting, framing, number of cameras and camera-shift ranges of each style."""
# Colour ranges: [hue_lo, hue_hi (may pass 1, wraps), sat_lo, sat_hi, val_lo, val_hi, p_grey].
# Probabilities: bags (none, backpack, shoulder bag, handbag); patterns (plain, stripes, two-tone,
# chest logo, vertical split).
DOMAIN_PRESETS = {
    "SynthA": {  # summer, outdoor, bright saturated clothes (Market-like)
        "num_cameras": 6, "person_height": 0.86, "light": [1.03, 1.0, 0.95],
        "upper": [0.0, 1.0, 0.45, 0.95, 0.5, 0.95, 0.2], "lower": [0.0, 1.0, 0.1, 0.5, 0.15, 0.6, 0.5],
        "wall": [0.08, 0.35, 0.05, 0.35, 0.55, 0.9, 0.3], "floor": [0.0, 1.0, 0.0, 0.15, 0.35, 0.65, 0.5],
        "p_short_sleeves": 0.6, "p_shorts": 0.3, "p_skirt": 0.1, "p_long_hair": 0.3,
        "p_bag": [0.45, 0.25, 0.2, 0.1], "p_pattern": [0.4, 0.15, 0.15, 0.2, 0.1],
        "camera": {"gain": 0.2, "bright": [-0.12, 0.1], "contrast": [-0.25, 0.2], "blur": 1.6, "noise": 0.04,
                   "texture": 0.15},
    },
    "SynthB": {  # winter, indoor-ish, dark desaturated coats, bluish light (Duke-like)
        "num_cameras": 5, "person_height": 0.8, "light": [0.92, 0.95, 1.04],
        "upper": [0.45, 1.15, 0.2, 0.7, 0.3, 0.75, 0.4], "lower": [0.0, 1.0, 0.05, 0.4, 0.12, 0.5, 0.6],
        "wall": [0.5, 0.7, 0.05, 0.3, 0.3, 0.6, 0.4], "floor": [0.05, 0.12, 0.1, 0.35, 0.2, 0.45, 0.3],
        "p_short_sleeves": 0.1, "p_shorts": 0.05, "p_skirt": 0.1, "p_long_hair": 0.25,
        "p_bag": [0.3, 0.35, 0.25, 0.1], "p_pattern": [0.55, 0.1, 0.15, 0.1, 0.1],
        "camera": {"gain": 0.18, "bright": [-0.1, 0.1], "contrast": [-0.25, 0.15], "blur": 1.8, "noise": 0.04,
                   "texture": 0.15},
    },
    "SynthPre": {  # pre-training (the ImageNet stand-in, canu_plugin.bench.pretrain): every palette, wide cameras
        "num_cameras": 6, "person_height": 0.83, "light": [1.0, 1.0, 1.0],
        "upper": [0.0, 1.0, 0.1, 0.95, 0.2, 0.95, 0.3], "lower": [0.0, 1.0, 0.05, 0.6, 0.12, 0.65, 0.5],
        "wall": [0.0, 1.0, 0.05, 0.4, 0.3, 0.9, 0.3], "floor": [0.0, 1.0, 0.0, 0.35, 0.2, 0.65, 0.4],
        "p_short_sleeves": 0.4, "p_shorts": 0.2, "p_skirt": 0.1, "p_long_hair": 0.3,
        "p_bag": [0.4, 0.3, 0.2, 0.1], "p_pattern": [0.45, 0.15, 0.15, 0.15, 0.1],
        "camera": {"gain": 0.25, "bright": [-0.15, 0.12], "contrast": [-0.3, 0.2], "blur": 2.0, "noise": 0.05,
                   "texture": 0.2},
    },
}

__all__ = ["DOMAIN_PRESETS"]
