"""activate(): raw outputs -> the predictions of docs/conventions.md."""
import math

import torch

from evaluation.postprocess import activate


def test_semseg_argmax():
    output = torch.tensor([[0.1, 2.0], [1.0, -1.0], [0.0, 0.0]]).view(1, 3, 1, 2)
    assert torch.equal(activate("semseg", output), torch.tensor([[[1, 0]]]))
    assert activate("human_parts", output).dtype == torch.int64


def test_sal_is_softmax_foreground_without_second_sigmoid():
    # logits (0, ln 3) -> softmax[1] = 3/4
    output = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    torch.testing.assert_close(activate("sal", output), torch.tensor([[[0.75]]]))


def test_edge_sigmoid_normals_unit_depth_squeezed():
    torch.testing.assert_close(activate("edge", torch.zeros(2, 1, 3, 4)), torch.full((2, 3, 4), 0.5))
    normals = activate("normals", torch.tensor([3.0, 0.0, 4.0]).view(1, 3, 1, 1))
    torch.testing.assert_close(normals.flatten(), torch.tensor([0.6, 0.0, 0.8]))
    assert activate("depth", torch.ones(2, 1, 3, 4)).shape == (2, 3, 4)


def test_bfloat16_outputs_become_float32():
    assert activate("edge", torch.zeros(1, 1, 2, 2, dtype=torch.bfloat16)).dtype == torch.float32
