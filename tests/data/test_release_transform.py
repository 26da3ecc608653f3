"""Our training transform against the release's, written out in tests/data/release_reference.py,
with the same random choices forced on both: every output identical."""
import numpy as np
import pytest
import torch

from data.transforms import TrainTransform
from tests.data.release_reference import release_train
from tests.data.scripted_rng import ScriptedRng, photometric_draws

TASKS = ["semseg", "human_parts", "sal", "depth", "normals", "edge"]


def labelled_sample(height=60, width=80, seed=0):
    """Every task labelled; semseg class 1 left of column 40, class 2 right of it (so
    narrow windows fail the crop check), a few ignore pixels everywhere."""
    rng = np.random.default_rng(seed)
    normals = rng.uniform(-1, 1, (height, width, 3)).astype(np.float32)
    normals[rng.random((height, width)) < 0.2] = 255
    depth = rng.uniform(0.5, 9, (height, width)).astype(np.float32)
    depth[rng.random((height, width)) < 0.1] = 0
    semseg = np.where(np.arange(width) < width // 2, 1, 2).astype(np.uint8)[None].repeat(height, 0)
    semseg[rng.random((height, width)) < 0.05] = 255
    parts = np.zeros((height, width), np.uint8)
    parts[10:30, 50:70] = rng.integers(1, 7, (20, 20))
    return {"image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "semseg": semseg,
            "human_parts": parts, "sal": rng.integers(0, 2, (height, width), dtype=np.uint8),
            "edge": rng.integers(0, 2, (height, width), dtype=np.uint8), "normals": normals, "depth": depth,
            "meta": {"id": "forced", "size": (height, width)}}


CASES = {
    # scale 1.37 (60x80 -> 82x109), one window, flipped, all four photometric steps, contrast last
    "scaled": dict(factor=1.37, windows=[(9, 7)], flipped=True,
                   photometric=dict(brightness=12.3, contrast=0.8, contrast_first=False, saturation=1.3, hue=-7)),
    # scale 1 (untouched), two rejected windows (one class) before an accepted one
    "retried": dict(factor=1.0, windows=[(0, 0), (5, 2), (10, 30)], flipped=False,
                    photometric=dict(brightness=-30.0, contrast=1.45, contrast_first=True, hue=17)),
    # scale 0.6 (36x48): smaller than the crop, padded centred
    "padded": dict(factor=0.6, windows=[(0, 0)], flipped=True, photometric=dict(saturation=0.55)),
}


@pytest.mark.parametrize("case", CASES)
def test_forced_choices_give_the_release_outputs(case):
    choices = CASES[case]
    size = (64, 96) if case != "retried" else (32, 32)
    draws = [("uniform", choices["factor"])]
    draws += [draw for top, left in choices["windows"] for draw in (("integers", top), ("integers", left))]
    draws += [("random", 0.1 if choices["flipped"] else 0.9)] + photometric_draws(**choices["photometric"])
    rng = ScriptedRng(*draws)
    ours = TrainTransform(TASKS, size)(labelled_sample(), rng)
    assert not rng.left
    expected, offset = release_train(labelled_sample(), size, choices["factor"], choices["windows"],
                                     choices["flipped"], **choices["photometric"])
    assert ours["meta"]["offset"].tolist() == list(offset)
    for key in ["image"] + TASKS:
        ours_value = ours[key].float().reshape(expected[key].shape)
        assert torch.equal(ours_value, torch.from_numpy(expected[key])), key
