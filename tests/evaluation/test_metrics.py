"""Streaming meters on tiny arrays with hand-worked expected values."""
import math

import pytest
import torch

from evaluation.metrics import (DepthMeter, InverseDepthMeter, NormalsMeter, SaliencyMeter, SegmentationMeter,
                                image_region)


def full(batch, height, width):
    """Content windows of unpadded samples: [top 0, left 0, height, width]."""
    return torch.tensor([[0, 0, height, width]] * batch)


def test_image_region_marks_each_content_window():
    # [top, left, height, width]: the top-left 1x2 and the whole 2x3 of a 2x3 map
    region = image_region(torch.tensor([[0, 0, 1, 2], [0, 0, 2, 3]]), 2, 3, "cpu")
    assert region.tolist() == [[[True, True, False], [False, False, False]],
                               [[True, True, True], [True, True, True]]]
    centred = image_region(torch.tensor([[1, 1, 1, 2]]), 3, 4, "cpu")  # 1x2 centred in 3x4
    assert centred.tolist() == [[[False] * 4, [False, True, True, False], [False] * 4]]


def test_metrics_read_only_the_centred_content():
    # a 1x2 content centred in a 3x4 canvas (window [1, 1, 1, 2]); the padding holds
    # valid-looking labels that the prediction gets wrong
    target = torch.zeros(1, 3, 4, dtype=torch.int64)
    target[0, 1, 1:3] = torch.tensor([0, 1])
    prediction = 1 - target
    prediction[0, 1, 1:3] = torch.tensor([0, 1])  # right inside the window only
    meter = SegmentationMeter(2, 255)
    meter.update(prediction, target, torch.tensor([[1, 1, 1, 2]]))
    assert meter.compute()["mIoU"] == pytest.approx(100.0)


def test_miou_hand_worked_absent_class_counts_zero():
    # gt   [0, 0, 1, 1, 255]    3 classes; class 2 never in gt nor (valid) prediction
    # pred [0, 1, 1, 1, 2]      the ignored pixel's prediction does not count
    # class 0: TP 1, FP 0, FN 1 -> 1/2;  class 1: TP 2, FP 1, FN 0 -> 2/3;  class 2 absent -> 0
    # mean over all 3 classes, as the field's evaluation code has it
    meter = SegmentationMeter(3, 255)
    meter.update(torch.tensor([[[0, 1, 1, 1, 2]]]), torch.tensor([[[0, 0, 1, 1, 255]]]), full(1, 1, 5))
    assert meter.compute()["mIoU"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3 * 100)


def test_miou_counts_class_predicted_but_absent_from_gt():
    # gt [0, 0], pred [0, 2]: class 0 IoU 1/2, class 2 TP 0 FP 1 -> 0, class 1 absent -> 0
    meter = SegmentationMeter(3, 255)
    meter.update(torch.tensor([[[0, 2]]]), torch.tensor([[[0, 0]]]), full(1, 1, 2))
    assert meter.compute()["mIoU"] == pytest.approx(50.0 / 3)


def test_miou_ignores_padding_outside_size():
    # valid region 1x2 of a 2x2 map; the padded row would otherwise add errors
    meter = SegmentationMeter(2, 255)
    meter.update(torch.tensor([[[0, 1], [1, 1]]]), torch.tensor([[[0, 1], [0, 0]]]), torch.tensor([[0, 0, 1, 2]]))
    assert meter.compute()["mIoU"] == pytest.approx(100.0)


def test_saliency_maxf_pools_counts_over_the_split():
    # thresholds 0.25 / 0.5 / 0.75, foreground when p >= t.
    # image A: p [0.9, 0.6, 0.3, 0.1], gt [1, 1, 0, 0]
    # image B: p [0.8, 0.4, 0.7, 0.2], gt [1, 1, 0, 255] (last pixel ignored)
    # actual positives 4 (pooled)
    # t = 0.25: TP 2+2, predicted 3+3 -> P 4/6, R 1   -> F = 1.3 (2/3) / (0.3 (2/3) + 1) = 0.722222
    # t = 0.50: TP 2+1, predicted 2+2 -> P 3/4, R 3/4 -> F = 0.75
    # t = 0.75: TP 1+1, predicted 1+1 -> P 1,   R 1/2 -> F = 1.3 * 0.5 / (0.3 + 0.5) = 0.8125
    meter = SaliencyMeter(255, thresholds=torch.tensor([0.25, 0.5, 0.75]))
    prediction = torch.tensor([[[0.9, 0.6, 0.3, 0.1]], [[0.8, 0.4, 0.7, 0.2]]])
    target = torch.tensor([[[1, 1, 0, 0]], [[1, 1, 0, 255]]])
    meter.update(prediction, target, full(2, 1, 4))
    assert meter.true_pos.tolist() == [4, 3, 2]
    assert meter.predicted_pos.tolist() == [6, 4, 2]
    assert meter.compute()["maxF"] == pytest.approx(81.25)


def test_saliency_pools_counts_instead_of_averaging_images():
    # threshold 0.5. image A: p [0.9, 0.1], gt [1, 0] (third pixel ignored) -> P 1, R 1.
    # image B: p [0.9, 0.1, 0.1], gt [1, 1, 1] -> P 1, R 1/3.
    # pooled: TP 2, predicted 2, actual 4 -> P 1, R 1/2 -> F = 1.3 * 0.5 / (0.3 + 0.5) = 0.8125
    # (averaging per image would give P 1, R 2/3 -> F 0.896552)
    meter = SaliencyMeter(255, thresholds=torch.tensor([0.5]))
    meter.update(torch.tensor([[[0.9, 0.1, 0.0]]]), torch.tensor([[[1, 0, 255]]]), full(1, 1, 3))
    meter.update(torch.tensor([[[0.9, 0.1, 0.1]]]), torch.tensor([[[1, 1, 1]]]), full(1, 1, 3))
    assert meter.compute()["maxF"] == pytest.approx(81.25)


def test_saliency_default_thresholds_are_the_fields_19():
    meter = SaliencyMeter(255)
    assert meter.thresholds.tolist() == pytest.approx([k / 20 for k in range(1, 20)])
    target = torch.tensor([[[1, 0, 1, 0]]])
    meter.update(target.float(), target, full(1, 1, 4))
    assert meter.compute()["maxF"] == pytest.approx(100.0)
    # p = 0.5 is foreground at thresholds 0.05 .. 0.5 (p >= t) and background above
    meter = SaliencyMeter(255)
    meter.update(torch.tensor([[[0.5, 0.5]]]), torch.tensor([[[1, 0]]]), full(1, 1, 2))
    assert meter.predicted_pos.tolist() == [2] * 10 + [0] * 9


def test_normals_angular_error_hand_worked():
    # pixel 0: (1,0,0) vs (1,0,0) -> 0 deg;  pixel 1: (1,0,0) vs (0,1,0) -> 90 deg
    # pixel 2: (1,1,0) vs (2,0,0) -> 45 deg (both normalised)
    # pixel 3: target 255 -> ignored;  pixel 4: zero target -> ignored
    # mErr = 135 / 3 = 45;  rmse = sqrt((0 + 8100 + 2025) / 3) = sqrt(3375)
    prediction = torch.tensor([[1.0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0]]).T.reshape(1, 3, 1, 5)
    target = torch.tensor([[1.0, 0, 0], [0, 1, 0], [2, 0, 0], [255, 255, 255], [0, 0, 0]])
    target = target.T.reshape(1, 3, 1, 5)
    meter = NormalsMeter(255)
    meter.update(prediction, target, full(1, 1, 5))
    result = meter.compute()
    assert result["mErr"] == pytest.approx(45.0)
    assert result["rmse"] == pytest.approx(math.sqrt(3375.0))


def test_normals_identical_vectors_give_zero_error():
    vectors = torch.nn.functional.normalize(torch.randn(2, 3, 4, 4), dim=1)
    meter = NormalsMeter(255)
    meter.update(vectors, vectors, full(2, 4, 4))
    assert meter.compute()["mErr"] == pytest.approx(0.0, abs=1e-5)


def test_depth_abs_rel_and_rmse_hand_worked():
    # valid pixels: target 2 (pred 1, err -1) and target 1 (pred 4, err 3); 0 and 255 dropped
    # absErr = (1 + 3) / 2 = 2; relErr = (1/2 + 3/1) / 2 = 1.75; rmse = sqrt((1 + 9) / 2) = sqrt(5)
    meter = DepthMeter(255)
    meter.update(torch.tensor([[[1.0, 2.0, 3.0, 4.0]]]), torch.tensor([[[[2.0, 0.0, 255.0, 1.0]]]]),
                 full(1, 1, 4))
    assert meter.compute() == pytest.approx({"absErr": 2.0, "relErr": 1.75, "rmse": math.sqrt(5.0)})
    assert list(meter.compute()) == ["rmse", "absErr", "relErr"]
    # a second image is pooled with the first (pixel sums), not averaged per image:
    # target 4, pred 4.5 -> absErr (1 + 3 + 0.5) / 3, relErr (0.5 + 3 + 0.125) / 3, rmse sqrt(10.25 / 3)
    meter.update(torch.tensor([[[4.5]]]), torch.tensor([[[[4.0]]]]), full(1, 1, 1))
    assert meter.compute() == pytest.approx({"absErr": 1.5, "relErr": 3.625 / 3, "rmse": math.sqrt(10.25 / 3)})


def test_empty_meters_return_nan():
    assert math.isnan(SegmentationMeter(2, 255).compute()["mIoU"])
    assert math.isnan(SaliencyMeter(255).compute()["maxF"])
    assert math.isnan(NormalsMeter(255).compute()["mErr"])
    assert all(math.isnan(value) for value in DepthMeter(255).compute().values())


def test_state_dtypes_are_reducible():
    meters = [SegmentationMeter(3, 255), SaliencyMeter(255), NormalsMeter(255), DepthMeter(255)]
    for meter in meters:
        for tensor in meter.state_tensors():
            assert tensor.dtype in (torch.int64, torch.float64)


@pytest.mark.parametrize("meter_class", [NormalsMeter, DepthMeter, InverseDepthMeter])
def test_pooled_error_meters_state_round_trip_is_exact(meter_class):
    """Two ranks' states summed, or one state copied into a fresh meter, give exactly the
    metrics of one meter that saw every batch (the sums are the whole state)."""
    generator = torch.Generator().manual_seed(0)
    channels = 3 if meter_class is NormalsMeter else 1
    batches = []
    for _ in range(2):
        target = torch.rand(2, channels, 5, 6, generator=generator) * 4 + 0.5
        target[:, :, 0, 0] = 255  # ignored
        prediction = torch.rand(2, channels, 5, 6, generator=generator) * 4 + 0.5
        batches.append((prediction if channels == 3 else prediction[:, 0], target, full(2, 4, 6)))
    whole, rank0, rank1, copy = (meter_class(255) for _ in range(4))
    for batch in batches:
        whole.update(*batch)
    rank0.update(*batches[0])
    rank1.update(*batches[1])
    for own, other in zip(rank0.state_tensors(), rank1.state_tensors()):  # all_reduce(SUM)
        own += other
    for target, source in zip(copy.state_tensors(), whole.state_tensors()):  # load_state_tensors
        target.copy_(source)
    expected = whole.compute()
    assert list(expected) == list(meter_class.NAMES) and not any(math.isnan(v) for v in expected.values())
    assert rank0.compute() == expected and copy.compute() == expected
    whole.reset()
    assert all(math.isnan(value) for value in whole.compute().values())
