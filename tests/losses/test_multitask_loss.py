"""The masked multi-task criterion: hand-worked totals, masking, rescaling, gradients."""
import copy
import math

import torch
from easydict import EasyDict

from losses import build_loss
from utils.config import DEFAULTS, derive

LN2 = math.log(2.0)


def make_cfg(db_name, tasks, edge_w=None, variant=None, **loss_weights):
    raw = copy.deepcopy(DEFAULTS)
    raw.update(train_db_name=db_name, val_db_name=db_name, db_root="unused", ssl_type="full")
    for task in tasks:
        raw["task_dictionary"][f"include_{task}"] = True
    raw["loss_kwargs"]["loss_weights"].update(loss_weights)
    if edge_w is not None:
        raw["task_dictionary"]["edge_w"] = edge_w
    if variant is not None:
        raw["model_kwargs"]["variant"] = variant
    return derive(EasyDict(raw), "test")


def semseg_depth_case():
    """B = 2, tasks [semseg, depth]; sample 0 labels both, sample 1 only depth.

    semseg (2 of NYUD's 40 classes used, 1x1 image): zero logits -> CE = ln 40 for final
    and prelim. depth: final 1 vs target 3 -> L1 = 2; prelim 2 vs 3 -> L1 = 1.
    Sample 1's semseg target is a valid class on purpose: only task_mask may hide it.
    """
    final = {"semseg": torch.zeros(2, 40, 1, 1, requires_grad=True),
             "depth": torch.ones(2, 1, 1, 1, requires_grad=True)}
    prelim = {"semseg": torch.zeros(2, 40, 1, 1, requires_grad=True),
              "depth": torch.full((2, 1, 1, 1), 2.0, requires_grad=True)}
    batch = {"semseg": torch.tensor([0, 5]).view(2, 1, 1),
             "depth": torch.full((2, 1, 1, 1), 3.0),
             "task_mask": torch.tensor([[True, True], [False, True]])}
    return {"final": final, "prelim": prelim}, batch


def test_total_is_hand_worked_with_weights_prelim_and_rescaling():
    # weights semseg 1, depth 2, prelim_weight 0.5.
    # sample 0: 1 * (ln40 + 0.5 ln40) + 2 * (2 + 0.5 * 1) = 1.5 ln40 + 5; x (2 tasks / 2 labelled)
    # sample 1: 2 * (2 + 0.5) = 5; x (2 tasks / 1 labelled) = 10
    # total = mean over the 2 samples
    criterion = build_loss(make_cfg("NYUD", ["semseg", "depth"], semseg=1.0, depth=2.0))
    outputs, batch = semseg_depth_case()
    total, per_task = criterion(outputs, batch)
    ln40 = math.log(40.0)
    torch.testing.assert_close(total, torch.tensor((1.5 * ln40 + 5 + 10) / 2))
    # logging: final-output loss averaged over labelled samples only
    torch.testing.assert_close(per_task["semseg"], torch.tensor(ln40))
    torch.testing.assert_close(per_task["depth"], torch.tensor(2.0))
    assert not per_task["semseg"].requires_grad


def test_unlabelled_pairs_get_exactly_zero_gradient():
    criterion = build_loss(make_cfg("NYUD", ["semseg", "depth"]))
    outputs, batch = semseg_depth_case()
    total, _ = criterion(outputs, batch)
    total.backward()
    for head in ("final", "prelim"):
        grad = outputs[head]["semseg"].grad
        assert (grad[1] == 0).all()  # sample 1 does not label semseg
        assert (grad[0] != 0).any()
        assert (outputs[head]["depth"].grad != 0).all()


def test_missing_task_mask_means_all_tasks_labelled():
    criterion = build_loss(make_cfg("NYUD", ["semseg", "depth"], semseg=1.0, depth=2.0))
    outputs, batch = semseg_depth_case()
    del batch["task_mask"]
    total, per_task = criterion(outputs, batch)
    ln40 = math.log(40.0)
    # every sample: 1.5 ln40 + 5, rescale 2/2
    torch.testing.assert_close(total, torch.tensor(1.5 * ln40 + 5))
    assert set(per_task) == {"semseg", "depth"}


def test_rescaling_by_tasks_over_labelled_tasks():
    # Five PASCAL tasks, one sample labelling only sal: its loss is multiplied by 5 / 1.
    cfg = make_cfg("PASCALContext", ["semseg", "human_parts", "sal", "normals", "edge"])
    criterion = build_loss(cfg)
    shapes = {"semseg": 21, "human_parts": 7, "sal": 2, "normals": 3, "edge": 1}
    outputs = {head: {t: torch.zeros(1, c, 2, 2) for t, c in shapes.items()} for head in ("final", "prelim")}
    batch = {"semseg": torch.full((1, 2, 2), 255), "human_parts": torch.full((1, 2, 2), 255),
             "sal": torch.tensor([[[0, 1], [1, 1]]]), "normals": torch.full((1, 3, 2, 2), 255.0),
             "edge": torch.full((1, 1, 2, 2), 255.0),
             "task_mask": torch.tensor([[False, False, True, False, False]])}
    total, per_task = criterion(outputs, batch)
    # sal: zero logits -> CE ln2; w_fg = 1/4, w_bg = 3/4 -> (3 * 1/4 + 3/4) ln2 / 4 = 3/8 ln2
    sal = 3 / 8 * LN2
    torch.testing.assert_close(total, torch.tensor(5.0 * (1 + 0.5) * sal * 5 / 1))
    assert set(per_task) == {"sal"}


def test_labelled_task_without_valid_pixels_is_nan_free():
    criterion = build_loss(make_cfg("NYUD", ["semseg", "depth"]))
    outputs, batch = semseg_depth_case()
    batch["semseg"] = torch.full((2, 1, 1), 255)  # labelled for sample 0 but all ignore
    batch["depth"] = torch.zeros(2, 1, 1, 1)  # no measurement anywhere
    total, _ = criterion(outputs, batch)
    total.backward()
    assert total.item() == 0.0
    for head in ("final", "prelim"):
        for tensor in outputs[head].values():
            assert torch.isfinite(tensor.grad).all()


def test_model_zeros_for_unlabelled_final_outputs_are_irrelevant():
    # the model returns zeros for unlabelled final rows; changing them must not change the loss
    criterion = build_loss(make_cfg("NYUD", ["semseg", "depth"]))
    outputs, batch = semseg_depth_case()
    reference, _ = criterion(outputs, batch)
    with torch.no_grad():
        outputs["final"]["semseg"][1] = 100 * torch.randn(40, 1, 1)
        outputs["prelim"]["semseg"][1] = 100 * torch.randn(40, 1, 1)
    changed, _ = criterion(outputs, batch)
    torch.testing.assert_close(changed, reference)


def test_build_loss_passes_edge_w():
    cfg = make_cfg("NYUD", ["semseg", "edge"], edge_w=0.9)
    criterion = build_loss(cfg)
    outputs = {head: {"semseg": torch.zeros(1, 40, 1, 2), "edge": torch.zeros(1, 1, 1, 2)}
               for head in ("final", "prelim")}
    batch = {"semseg": torch.full((1, 1, 2), 255), "edge": torch.tensor([[[[1.0, 0.0]]]]),
             "task_mask": torch.tensor([[False, True]])}
    _, per_task = criterion(outputs, batch)
    # (0.9 ln2 + 0.1 ln2) / 2
    torch.testing.assert_close(per_task["edge"], torch.tensor(LN2 / 2))


def test_baseline_counts_its_one_prediction_once():
    # The MTL baseline's final output is its preliminary one: with the semseg_depth_case
    # numbers, sample 0: 1 * ln40 + 2 * 2 (x 2/2), sample 1: 2 * 2 (x 2/1) = 8; mean over 2.
    cfg = make_cfg("NYUD", ["semseg", "depth"], variant="baseline", semseg=1.0, depth=2.0)
    criterion = build_loss(cfg)
    outputs, batch = semseg_depth_case()
    outputs["prelim"] = outputs["final"]
    total, _ = criterion(outputs, batch)
    torch.testing.assert_close(total, torch.tensor((math.log(40.0) + 4 + 8) / 2))
