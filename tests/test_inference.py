"""inference.py end to end on scikit-image's photographs with a tiny random DiffusionMTL."""
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
import torch
from easydict import EasyDict
from PIL import Image
from torch import nn

import engine.predict
import inference
import main
from data.synthetic import generate
from data.transforms import ValTransform
from models import build_model
from engine.checkpoint import save_checkpoint
from data.metadata import PARTS_PALETTE, VOC_PALETTE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "demo.yml")
TASKS = ("semseg", "human_parts", "sal", "normals", "edge")


def save_random_checkpoint(path, cfg):
    torch.manual_seed(0)
    save_checkpoint(path, {"model": build_model(cfg).state_dict()})
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_cfg):
    """configs/demo.yml (ViT-tiny, PASCAL's 5 tasks) as tiny_cfg shrinks it, with random weights."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: extra threads only wait for each other on a busy CI box
    folder = tmp_path_factory.mktemp("inference")
    cfg = tiny_cfg()
    checkpoint = save_random_checkpoint(str(folder / "tiny.pth"), cfg)
    model = inference.load_model(cfg, checkpoint, torch.device("cpu"))
    yield {"cfg": cfg, "checkpoint": checkpoint, "model": model}
    torch.set_num_threads(threads)


def palette_colours(palette, count):
    return {tuple(c) for c in palette[:count].tolist()}


def check_outputs(save_dir, name, size):
    """Every task's PNG and the overview exist, at the input's (H, W), in the right format."""
    for task in TASKS:
        png = Image.open(os.path.join(save_dir, task, f"{name}.png"))
        assert png.size[::-1] == size, (task, name)
        assert png.mode == {"semseg": "P", "human_parts": "P", "normals": "RGB"}.get(task, "L")
    semseg = Image.open(os.path.join(save_dir, "semseg", f"{name}.png")).convert("RGB")
    assert {tuple(c) for c in np.asarray(semseg).reshape(-1, 3).tolist()} <= palette_colours(VOC_PALETTE, 21)
    parts = Image.open(os.path.join(save_dir, "human_parts", f"{name}.png")).convert("RGB")
    assert {tuple(c) for c in np.asarray(parts).reshape(-1, 3).tolist()} <= palette_colours(PARTS_PALETTE, 7)
    overview = Image.open(os.path.join(save_dir, "overview", f"{name}.png"))
    assert overview.mode == "RGB" and overview.width > overview.height


@pytest.mark.slow
def test_cli_on_a_folder_with_a_corrupt_file(setup, tiny_opts, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(skimage.data.coffee()).save(images / "coffee.jpg")  # 400 x 600
    Image.fromarray(skimage.data.chelsea()).save(images / "chelsea.png")  # 300 x 451
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (images / "notes.txt").write_text("not an image, not an input")
    command = [sys.executable, os.path.join(ROOT, "inference.py"), "--config_path", CONFIG,
               "--checkpoint", setup["checkpoint"], "--image_path", str(images), "--save_dir",
               str(tmp_path / "out"), "--device", "cpu", "--batch_size", "2", "--opts", *tiny_opts]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.stderr
    assert "broken.jpg: cannot read image" in result.stderr and "1 of 3 images" in result.stderr
    assert "2 images in" in result.stdout and "images/s" in result.stdout
    check_outputs(str(tmp_path / "out"), "coffee", (400, 600))
    check_outputs(str(tmp_path / "out"), "chelsea", (300, 451))
    assert not os.path.exists(tmp_path / "out" / "semseg" / "broken.png")


def test_grayscale_rgba_16bit_and_exif_rotated_inputs(setup, tmp_path):
    camera = skimage.data.camera()[100:300, 50:450]  # grey, 200 x 400
    astronaut = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((160, 120)))
    alpha = np.full(astronaut.shape[:2] + (1,), 255, np.uint8)
    alpha[:, :40] = 0  # transparent left strip
    chelsea = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((225, 150)))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: display rotated 90 degrees clockwise

    Image.fromarray(camera).save(tmp_path / "gray.png")
    Image.fromarray(np.concatenate([astronaut, alpha], axis=2)).save(tmp_path / "rgba.png")
    Image.fromarray(camera[:120].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(chelsea).save(tmp_path / "rotated.jpg", exif=exif, quality=95)

    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    assert np.array_equal(inference.read_image(str(tmp_path / "deep.png"))[..., 0], camera[:120])
    rgba = inference.read_image(str(tmp_path / "rgba.png"))
    assert (rgba[:, :40] == 255).all() and np.array_equal(rgba[:, 40:], astronaut[:, 40:])
    gray = inference.read_image(str(tmp_path / "gray.png"))
    assert gray.shape == (200, 400, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    rotated = inference.read_image(str(tmp_path / "rotated.jpg"))
    assert rotated.shape == (225, 150, 3)
    assert np.abs(rotated.astype(int) - np.rot90(chelsea, k=-1)).mean() < 3  # clockwise, JPEG noise

    paths = inference.find_images(str(tmp_path / "*.*g"))
    assert [os.path.basename(p) for p in paths] == ["deep.png", "gray.png", "rgba.png", "rotated.jpg"]
    written, failures = inference.run(setup["model"], setup["cfg"], paths, str(tmp_path / "out"),
                                      torch.device("cpu"), batch_size=3, progress=False)
    assert (written, failures) == (4, [])
    for name, size in (("gray", (200, 400)), ("rgba", (120, 160)), ("deep", (120, 400)), ("rotated", (225, 150))):
        check_outputs(str(tmp_path / "out"), name, size)


def test_same_image_and_checkpoint_give_identical_files(setup, tiny_cfg, tmp_path):
    Image.fromarray(skimage.data.astronaut()[:, 64:448]).save(tmp_path / "astronaut.png")  # 512 x 384
    paths = [str(tmp_path / "astronaut.png")]
    inference.run(setup["model"], setup["cfg"], paths, str(tmp_path / "a"), torch.device("cpu"), progress=False)
    reloaded = inference.load_model(tiny_cfg(), setup["checkpoint"], torch.device("cpu"))
    inference.run(reloaded, setup["cfg"], paths, str(tmp_path / "b"), torch.device("cpu"), progress=False)
    files = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "a")
                   for d, _, names in os.walk(tmp_path / "a") for f in names)
    assert len(files) == len(TASKS) + 1
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative


class PaddingMarker(nn.Module):
    """Outputs class 1 inside the image region and class 5 in the padding, for every task."""

    def forward(self, images):
        valid = (images.abs().sum(dim=1, keepdim=True) > 0).float()  # padding is exactly 0
        logits = torch.cat([torch.zeros_like(valid), valid, torch.zeros_like(valid).repeat(1, 3, 1, 1),
                            1 - valid] + [torch.zeros_like(valid)] * 15, dim=1) * 10
        return {"final": {"semseg": logits}, "prelim": {"semseg": logits}}


def test_padding_is_cropped_before_resizing_back(setup):
    cfg = setup["cfg"]
    image = np.full((30, 90, 3), 200, np.uint8)  # resized to 21 x 64 inside the 64 x 64 input
    assert inference.fit_size(30, 90, cfg.val_size) == (21, 64)
    semseg_only = EasyDict({"val_size": cfg.val_size, "amp": False, "channels_last": False,
                            "TASKS": {"NAMES": ["semseg"]}})
    semseg = inference.predict(PaddingMarker(), semseg_only, [image], torch.device("cpu"))[0]["semseg"]
    assert semseg.shape == (30, 90) and (semseg == 1).all()


def test_an_image_that_fits_is_padded_as_validation_pads_it():
    image = np.random.default_rng(0).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    assert inference.fit_size(30, 41, (64, 64)) == (30, 41)  # not enlarged
    canvas, window = inference.prepare(image, (64, 64))
    assert window.tolist() == [17, 11, 30, 41]  # (64 - 30) // 2, (64 - 41) // 2
    validation = ValTransform([], (64, 64))({"image": image, "meta": {"id": "x"}})
    assert torch.equal(canvas, validation["image"])


def test_a_validation_image_gets_the_same_prediction_from_run_mode_infer(setup, tiny_opts, tmp_path):
    # 40 x 52 images in a 64 x 64 canvas: the content at rows 12..51, columns 6..57
    db_root = generate("pascal", str(tmp_path / "db"), n_train=2, n_val=2, size=(40, 52), seed=0)
    opts = [*tiny_opts, f"db_root={tmp_path / 'db'}", f"output_dir={tmp_path / 'runs'}", "valBatch=1",
            "eval_kwargs.save_predictions=true"]  # both paths: the config's channels_last
    status = main.main(["--config_exp", CONFIG, "--run_mode", "infer", "--checkpoint", setup["checkpoint"],
                        "--device", "cpu", "--opts", *opts])
    assert status == 0
    evaluated = tmp_path / "runs" / "demo" / "infer" / "predictions"
    images = sorted((tmp_path / "db" / db_root / "JPEGImages").glob("*.jpg"))
    val_ids = {path.stem for path in (evaluated / "semseg").glob("*.png")}
    paths = [str(path) for path in images if path.stem in val_ids]
    assert len(paths) == 2
    inference.run(setup["model"], setup["cfg"], paths, str(tmp_path / "inferred"), torch.device("cpu"),
                  progress=False)
    for task in TASKS:
        for path in paths:
            name = f"{os.path.splitext(os.path.basename(path))[0]}.png"
            assert (evaluated / task / name).read_bytes() == (tmp_path / "inferred" / task / name).read_bytes(), \
                (task, name)


def test_with_bf16_autocast_run_mode_infer_and_inference_write_the_same_pngs(setup, tiny_cfg, tiny_opts, tmp_path,
                                                                              monkeypatch):
    """`amp: true` and `channels_last: true` (every vitb_* config on a GPU): autocast is forced
    on the CPU here (bf16, as on a GPU), and both paths predict through engine.predict, so a
    validation image gets the same PNGs from run_mode=infer and from inference.py."""
    monkeypatch.setattr(engine.predict, "AUTOCAST_DEVICES", ("cuda", "cpu"))
    db_root = generate("pascal", str(tmp_path / "db"), n_train=2, n_val=2, size=(40, 52), seed=0)
    amp = ["amp=true", "channels_last=true"]
    opts = [*tiny_opts, *amp, f"db_root={tmp_path / 'db'}", f"output_dir={tmp_path / 'runs'}", "valBatch=1",
            "eval_kwargs.save_predictions=true"]
    status = main.main(["--config_exp", CONFIG, "--run_mode", "infer", "--checkpoint", setup["checkpoint"],
                        "--device", "cpu", "--opts", *opts])
    assert status == 0
    evaluated = tmp_path / "runs" / "demo" / "infer" / "predictions"
    val_ids = sorted(path.stem for path in (evaluated / "semseg").glob("*.png"))
    paths = [str(tmp_path / "db" / db_root / "JPEGImages" / f"{sample_id}.jpg") for sample_id in val_ids]
    assert len(paths) == 2
    bf16_cfg = tiny_cfg(*amp)
    assert bf16_cfg.amp and engine.predict.Runtime.of(bf16_cfg, "cpu").autocast_enabled
    model = inference.load_model(bf16_cfg, setup["checkpoint"], torch.device("cpu"))
    inference.run(model, bf16_cfg, paths, str(tmp_path / "bf16"), torch.device("cpu"), progress=False)
    inference.run(setup["model"], setup["cfg"], paths, str(tmp_path / "fp32"), torch.device("cpu"), progress=False)
    differs_from_fp32 = []
    for task in TASKS:
        for sample_id in val_ids:
            name = f"{sample_id}.png"
            bf16 = (tmp_path / "bf16" / task / name).read_bytes()
            assert (evaluated / task / name).read_bytes() == bf16, (task, name)
            differs_from_fp32.append(bf16 != (tmp_path / "fp32" / task / name).read_bytes())
    assert any(differs_from_fp32)  # bf16 did run: its predictions are not float32's


def test_output_names_never_collide():
    assert inference.output_names(["x/a.jpg", "x/b.png"]) == ["a", "b"]
    assert inference.output_names(["x/a.jpg", "x/a.png", "x/c.png"]) == ["a_jpg", "a_png", "c"]
    assert inference.output_names(["p/a.jpg", "q/a.jpg"]) == ["p__a_jpg", "q__a_jpg"]


@pytest.fixture
def run_main(capsys, tiny_opts):
    """inference.main on the tiny config: (exit status, captured output)."""
    def run(*argv):
        status = inference.main(["--config_path", CONFIG, "--device", "cpu", "--no_progress", *argv,
                                 "--opts", *tiny_opts])
        return status, capsys.readouterr()
    return run


def test_missing_checkpoint_is_one_line_and_status_2(setup, tmp_path, run_main):
    Image.fromarray(skimage.data.coffee()).save(tmp_path / "coffee.jpg")
    status, captured = run_main("--checkpoint", str(tmp_path / "nope.pth"),
                                "--image_path", str(tmp_path / "coffee.jpg"), "--save_dir", str(tmp_path / "out"))
    assert status == 2
    assert captured.err.strip().count("\n") == 0 and "checkpoint not found" in captured.err
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_config_is_one_line_and_status_2(setup, tiny_cfg, tmp_path, run_main):
    Image.fromarray(skimage.data.coffee()).save(tmp_path / "coffee.jpg")
    other = save_random_checkpoint(str(tmp_path / "wide.pth"), tiny_cfg("model_kwargs.embed_dim=24"))
    status, captured = run_main("--checkpoint", other, "--image_path", str(tmp_path / "coffee.jpg"),
                                "--save_dir", str(tmp_path / "out"))
    assert status == 2
    assert captured.err.strip().count("\n") == 0 and "does not match the model" in captured.err


def test_folder_without_images_is_status_2(setup, tmp_path, run_main):
    status, captured = run_main("--checkpoint", setup["checkpoint"], "--image_path", str(tmp_path),
                                "--save_dir", str(tmp_path / "out"))
    assert status == 2 and "no image files" in captured.err


# ------------------------------------------------------------------ overview figure

MAX_OVERVIEW_SIDE = 4000  # "a few thousand pixels": six 480-pixel columns and two rows fit well inside


@pytest.mark.parametrize("shape", [(3, 2000), (2000, 3)])
def test_a_thin_image_gives_a_bounded_overview(setup, tmp_path, shape):
    # (3, 2000) used to make 160,000-pixel tiles: a 960,042 x 306 overview, 42 s to draw and save
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)).save(tmp_path / "thin.png")
    written, failures = inference.run(setup["model"], setup["cfg"], [str(tmp_path / "thin.png")], str(tmp_path / "out"),
                                      torch.device("cpu"), progress=False)
    assert (written, failures) == (1, [])
    check_outputs(str(tmp_path / "out"), "thin", shape)
    overview = Image.open(tmp_path / "out" / "overview" / "thin.png")
    assert max(overview.size) <= MAX_OVERVIEW_SIDE and overview.width * overview.height < 2_000_000, overview.size


def test_overview_tiles_fit_their_box_whatever_the_aspect_ratio():
    from evaluation.visualization import make_overview

    semseg = np.zeros((5, 3000), np.int64)
    overview = make_overview(np.zeros((5, 3000, 3), np.uint8), {"semseg": semseg, "sal": np.zeros((5, 3000))})
    assert overview.shape[1] <= 3 * (480 + 6) + 6  # three columns of at most 2 x 240 pixels
    tall = make_overview(np.zeros((3000, 5, 3), np.uint8), {"semseg": semseg.T})
    assert tall.shape[0] < 240 + 200 and tall.shape[1] < 2 * 150 + 3 * 6 + 1


def ground_truth_colours(dataset, sample_id, task):
    from data.pascal_context import PascalContext
    from evaluation.visualization import colorize

    loader = PascalContext(str(dataset.root), "val", list(TASKS))
    target = loader.load(loader.ids.index(sample_id))[task]
    return {tuple(c) for c in colorize(task, target).reshape(-1, 3).tolist()}


def test_with_targets_draws_the_ground_truth_of_a_validation_image(setup, pascal_db, tiny_opts, tmp_path, capsys):
    val_id = (pascal_db.root / "ImageSets" / "Context" / "val.txt").read_text().split()[0]
    photo = tmp_path / "photos" / f"{val_id}.jpg"  # a copy: the same name, outside the dataset
    photo.parent.mkdir()
    photo.write_bytes((pascal_db.root / "JPEGImages" / f"{val_id}.jpg").read_bytes())

    def overview(image, *flags):
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        status = inference.main(["--config_path", CONFIG, "--device", "cpu", "--no_progress", "--checkpoint",
                                 setup["checkpoint"], "--image_path", str(image), "--save_dir", str(out), *flags,
                                 "--opts", *tiny_opts, f"db_root={pascal_db.db_root}"])
        assert status == 0, capsys.readouterr().err
        return np.asarray(Image.open(out / "overview" / f"{val_id}.jpg".replace(".jpg", ".png")))

    plain = overview(photo)  # a photo that happens to share a validation id: no ground truth
    with_targets = overview(photo, "--with_targets")
    automatic = overview(pascal_db.root / "JPEGImages" / f"{val_id}.jpg")  # the dataset's own file
    assert with_targets.shape[1] == plain.shape[1] and with_targets.shape[0] > plain.shape[0] + 240
    assert np.array_equal(automatic, with_targets)
    assert np.array_equal(with_targets[:plain.shape[0]], plain)  # the predictions' row is unchanged
    ground_truth_row = {tuple(c) for c in with_targets[plain.shape[0]:].reshape(-1, 3).tolist()}
    for task in ("semseg", "human_parts"):  # every colour of the labels (nearest upscaling keeps them all)
        assert ground_truth_colours(pascal_db, val_id, task) <= ground_truth_row, task


def test_with_targets_names_what_it_cannot_match(setup, tiny_opts, pascal_db, tmp_path, capsys):
    Image.fromarray(skimage.data.coffee()).save(tmp_path / "coffee.jpg")

    def run(db_root):
        status = inference.main(["--config_path", CONFIG, "--device", "cpu", "--no_progress", "--checkpoint",
                                 setup["checkpoint"], "--image_path", str(tmp_path / "coffee.jpg"), "--save_dir",
                                 str(tmp_path / "out"), "--with_targets", "--opts", *tiny_opts, f"db_root={db_root}"])
        return status, capsys.readouterr()

    status, captured = run(tmp_path)  # no dataset there
    assert status == 2 and captured.err.count("\n") == 1
    assert captured.err.startswith("error: --with_targets: the dataset folder") and "db_root=DIR" in captured.err
    status, captured = run(pascal_db.db_root)  # a dataset, but no sample of that name
    assert status == 0 and "1 of 1 images are named after no validation sample" in captured.out
