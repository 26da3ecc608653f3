"""`python -m data.check`: every sample of both splits read once, every problem listed."""
import numpy as np
import pytest
from PIL import Image

from data.check import kind_of, main
from data.datasets import build_dataset
from utils.config import load_config
from utils.errors import DataError

MTAN_NYUD = "configs/nyud/mtan_resnet18_onelabel.yml"


def check(capsys, config, db_root, *opts):
    """(exit status, stdout lines) of `python -m data.check` on `config` with db_root."""
    status = main(["--config_exp", config, "--opts", f"db_root={db_root}", "nworkers=0", *opts])
    return status, capsys.readouterr().out.strip().splitlines()


@pytest.mark.parametrize("fixture, config, opts", [
    ("pascal_db", "configs/demo.yml", []),
    ("nyud_db", "configs/nyud/vitb_onelabel.yml", []),
    ("nyud_mtan_db", MTAN_NYUD, ["partial_labels_file="]),  # generated ids: not the paper's split
    ("cityscapes_db", "configs/cityscapes/resnet18_onelabel.yml", ["partial_labels_file="]),
])
def test_generated_datasets_are_clean(request, capsys, fixture, config, opts):
    dataset = request.getfixturevalue(fixture)
    status, lines = check(capsys, config, dataset.db_root, *opts)
    assert status == 0, lines
    assert lines[0].startswith(f"data.check: {lines[0].split()[1]} at {dataset.root}")
    assert "generated onelabel split (seed 0" in lines[0]
    assert lines[-1].startswith(f"data.check: clean: {dataset.n_train} train + {dataset.n_val} val samples")
    assert len(lines) == 2


def _train_ids(root):
    return (root / "ImageSets" / "Context" / "train.txt").read_text().split()


def test_every_problem_of_a_damaged_pascal_copy_is_listed(pascal_db, tmp_path, capsys):
    copy = pascal_db.copy_to(tmp_path)
    root = copy.root
    ids = _train_ids(root)
    (root / "sal_distill" / f"{ids[0]}.png").unlink()  # deleted
    jpeg = root / "JPEGImages" / f"{ids[1]}.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # truncated
    semseg = root / "semseg" / "VOC12" / f"{ids[2]}.png"
    with Image.open(semseg) as image:
        values, palette = np.array(image), image.getpalette()
    values[0, 0] = 30  # no VOC class
    out = Image.fromarray(values)
    if palette:
        out.putpalette(palette)
    out.save(semseg)
    normals = root / "normals_distill" / f"{ids[3]}.png"
    with Image.open(normals) as image:
        image.resize((40, 40)).save(normals)  # not the image's size
    (root / "pascal-context" / "trainval" / f"{ids[4]}.mat").write_bytes(b"not a MATLAB file")
    val_id = (root / "ImageSets" / "Context" / "val.txt").read_text().split()[0]
    (root / "JPEGImages" / f"{val_id}.jpg").unlink()

    status = main(["--config_exp", "configs/demo.yml", "--opts", f"db_root={copy.db_root}", "nworkers=1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 2
    listed = "\n".join(lines)
    assert lines[1] == "6 problem(s):" and len([line for line in lines if line.startswith(("  train ", "  val "))]) == 8
    expected = {  # file -> (split, tasks, kind)
        f"sal_distill/{ids[0]}.png": ("train", "sal", "missing"),
        f"JPEGImages/{ids[1]}.jpg": ("train", "image", "unreadable"),
        f"semseg/VOC12/{ids[2]}.png": ("train", "semseg", "out of range"),
        f"normals_distill/{ids[3]}.png": ("train", "normals", "wrong size"),
        f"pascal-context/trainval/{ids[4]}.mat": ("train", "normals, edge", "unreadable"),
        f"JPEGImages/{val_id}.jpg": ("val", "image", "missing"),
    }
    for name, (split, tasks, kind) in expected.items():
        line = next(line for line in lines if str(root / name) in line)
        assert line.split()[0] == split and f" {tasks} " in line and f" {kind} " in line, line
    assert "class id 30 outside 0..20" in listed and "is 40x40, the image is 64x64" in listed
    assert "  train sal 1 (missing 1); image 1 (unreadable 1); semseg 1 (out of range 1); " \
           "normals 2 (unreadable 1, wrong size 1); edge 1 (unreadable 1)" in lines
    assert "  val   image 1 (missing 1)" in lines
    assert lines[-1] == (f"data.check: 6 problem(s) in 12 train + 4 val samples of PASCALContext ({root}): "
                         "missing 2, unreadable 2, wrong size 1, out of range 1")


def test_nan_depth_and_bad_labels_of_the_mtan_layout_are_listed(nyud_mtan_db, tmp_path, capsys):
    copy = nyud_mtan_db.copy_to(tmp_path)
    depth_path = copy.root / "train" / "depth" / "4.npy"
    depth = np.load(depth_path)
    depth[0, 0] = np.nan
    np.save(depth_path, depth)
    label_path = copy.root / "val" / "label" / "1.npy"
    label = np.load(label_path)
    label[3, 3] = 20  # 13 classes
    np.save(label_path, label)
    (copy.root / "train" / "normal" / "2.npy").unlink()
    status, lines = check(capsys, MTAN_NYUD, copy.db_root, "partial_labels_file=")
    assert status == 2
    assert any(line.startswith("  train depth") and " NaN " in line and f"{depth_path} (sample '4'): depth has "
               "1 NaN / inf values" in line for line in lines), lines
    assert any(line.startswith("  val   semseg") and f"{label_path} (sample '1'): label 20 outside -1..12" in line
               for line in lines), lines
    assert any(line.startswith("  train normals") and " missing " in line for line in lines), lines
    assert lines[-1].endswith("missing 1, NaN 1, out of range 1")


def test_a_split_naming_other_images_is_listed(pascal_db, capsys):
    status, lines = check(capsys, "configs/demo.yml", pascal_db.db_root,
                          "partial_labels_file=data/splits/pascal_onelabel.json.gz")
    assert status == 2
    assert "partial labels: onelabel split " in lines[0] and "pascal_onelabel.json.gz" in lines[0]
    assert lines[2].split()[:3] == ["train", "split", "split"]
    assert "4998 of its 4998 image ids are not in the dataset's training split of 12 images" in lines[2]
    assert lines[-1].endswith(": split ids 1")


def test_missing_dataset_and_bad_config(tmp_path, capsys):
    status, lines = check(capsys, "configs/demo.yml", tmp_path / "absent")
    assert status == 2
    assert [line.split()[:3] for line in lines[2:4]] == [["train", "dataset", "missing"],
                                                         ["val", "dataset", "missing"]]
    assert main(["--config_exp", "configs/demo.yml", "--opts", "trBatch=x"]) == 2
    assert capsys.readouterr().err.startswith("error: configs/demo.yml (--opts): key 'trBatch'")


def test_the_missing_dataset_error_points_to_the_check_and_the_docs(tmp_path):
    cfg = load_config("configs/demo.yml", [f"db_root={tmp_path}"])
    with pytest.raises(DataError, match=r"docs/datasets\.md.*python -m data\.check --config_exp"):
        build_dataset(cfg, "train")


@pytest.mark.parametrize("message, kind", [
    ("missing file a.png (sample 'x')", "missing"),
    ("cannot read a.jpg (sample 'x'): broken data stream", "unreadable"),
    ("a.png (sample 'x') is 40x40, the image is 64x64", "wrong size"),
    ("a.npy (sample 'x'): label 20 outside -1..12", "out of range"),
    ("a.npy (sample 'x'): image values must be in [0, 1], found 3", "out of range"),
    ("a.npy (sample 'x'): label has non-finite values", "NaN"),
    ("s.json: 3 of its 9 image ids are not in the dataset's training split of 6 images", "split ids"),
    ("something else", "invalid"),
])
def test_kinds_of_problems(message, kind):
    assert kind_of(message) == kind
