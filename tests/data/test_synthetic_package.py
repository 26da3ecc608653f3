"""data.synthetic writes, for a fixed seed, byte for byte the files it wrote as one module.

The digests below were recorded from the single-module generator (data/synthetic.py, before
its split into the data/synthetic/ package) with 1 train + 1 val image of 32x48, seed 3.
The encoders fix the bytes: they hold for Pillow 13.0.0, numpy 2.4.6, scipy 1.17.1 and
opencv-python-headless 5.0.0.93 (and zlib 1.2.13 for the compressed .mat files); after an
upgrade of one of them, check the images and record the digests again with `_digests`.
scipy writes the time into a .mat header ("Created on: <asctime>"); the one-module generator's
files therefore differed from run to run there. The package writes a fixed time (MAT_TIME),
so its files are the same bytes run after run (checked); for the comparison with the recorded
digests that time is masked.
"""
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from data.synthetic import generate
from data.synthetic.writing import MAT_TIME

REPO = Path(__file__).resolve().parents[2]

# layout -> {file relative to the dataset folder: sha256}, in sorted path order
DIGESTS = {
    "pascal": {
        "ImageSets/Context/train.txt": "33404812c904f5e5075fee372d3f08b6b83f42a25fbf50e3ecb74c3f9eed8014",
        "ImageSets/Context/val.txt": "ef56c883b8ed24acc948becde3d6ebe1b6e5688ef5c7a8ce9c6f682891ebd0f0",
        "ImageSets/Parts/train.txt": "5e1aaf3a742fb7d632436f7b1b25546d74ac46cfa91df57bd1ab7ef3235bc701",
        "ImageSets/Parts/val.txt": "ef11b0cc9b820719f79e8e539567a92ea79a3a8e3c3049f64a2d97c1e4c2177a",
        "JPEGImages/synth_000000.jpg": "be0b8760ab7f5e402d5146072f399e77167706d765037d0ab9881e5c309d59de",
        "JPEGImages/synth_000001.jpg": "c0985f7c22f3f04836648a93c0442f6cb7db8105d28d46c77a65bc3f7705a9a9",
        "human_parts/synth_000000.mat": "7161cfca7ed51410446e78fa6b52cb6e5e2efed84d31d25d8220a6a88bea65df",
        "human_parts/synth_000001.mat": "0ed67166fe338d717f79c3e3c1582c4af409501b908bf76d4e7a2b3507c1ab6a",
        "normals_distill/synth_000000.png": "ce3ca22c14eda2db5fc865cce8312ec0830ef50bca33a33f474fce2876e5fd04",
        "normals_distill/synth_000001.png": "85ecd5535a38c2a506f57ce33930b927839cf9121de044ebd3b3f08c2c3052bf",
        "pascal-context/trainval/synth_000000.mat": "bcadb24121cef99988eb2d19d00f9b7d05719603b441e8abd58066ef4d19ee51",
        "pascal-context/trainval/synth_000001.mat": "e4c7c5f206447fa64437bbd0745893805682ea236665800fbe87d2dd6c5cd6b5",
        "sal_distill/synth_000000.png": "137a1cb86c2699fc210be674ccb219f3d7dfbbf5a06d188afe412a21dd6abb64",
        "sal_distill/synth_000001.png": "d78e036d37e2bdaad9d4a7ec75dea0b049ce3d9b93c7cc7df97950ed3a6c668b",
        "semseg/VOC12/synth_000000.png": "7ed9db11bf1995cf73b3868e943cdd1dc88934fb9d9378826ed875ee7aa038ea",
        "semseg/VOC12/synth_000001.png": "d968eb2bcf577bbb24e42697e9ffc7c17b9c17341e76b217f873f004cca5d617",
    },
    "nyud": {
        "depth/000000.npy": "2a555ea50d245f88653ac5ed49895440e5adbefeb16c4eaf456e6d2dd90fec73",
        "depth/000001.npy": "68c23732f064ea3b442675ef8173343093906dcceeaa3f1545478dfca7a00e96",
        "edge/000000.png": "e5dd790e89f6e10461fdcf986293ac13ca1e9bf593238b5ca6893a7c03f46663",
        "edge/000001.png": "3cf63dfbb1943147e331d991839a7ca7e463b69a43272a756a61733e0d5038d8",
        "gt_sets/train.txt": "2f1ab4cf0adb400efabfa05a6c1ca3791de7c1d2edadfba882dc9c8dba1992bb",
        "gt_sets/val.txt": "2f901bcafc0341672d6bb8861391562829b8873341d5af8192c68c136723b3f7",
        "images/000000.png": "ea8205032d98cebe49aa943283632a179dad8b4f3a86eef3049ea1a6b812a4eb",
        "images/000001.png": "3a76c1f393967b51e31f1324381c902ef7f067406b2b670037eee53acd11889d",
        "normals/000000.png": "b0ab224575dcf7c04ceca869e2cfe0949b28fd9ac2d0010d7c1a2f6e180920a7",
        "normals/000001.png": "8196e92d0e904e646dc12c5d1d397420f3ed0460f72f4914f972deb9711aaa73",
        "segmentation/000000.png": "24296d67f7930be899d409e5e332d6dcc3d7f62fbc935f4366af3ac797f16531",
        "segmentation/000001.png": "8d9be33a572f30b7e3ceed23016bd349a003fc2ea4ac5e208af4c2072feba93e",
    },
    "nyud_mtan": {
        "train/depth/0.npy": "e1a715e1dc23e3bec0c945e2bda55977ace6e0c7c5839aeb8df40d40859b69aa",
        "train/image/0.npy": "72cfd13e5600ee43836905acfdda7f92858b0e7641ed12ed75272c1cfa593fae",
        "train/label/0.npy": "28a27aa49373b0375ec61cdb27e226a8223bc3c8960bcf3b13fd2026e1c2abd5",
        "train/normal/0.npy": "e27406255d9d01b876d798095036ae7986dd50693f218c3d9747123f9061858e",
        "val/depth/0.npy": "e9b0cc8d994bc0e14ade34502e7efdb586a7e2c68f7ed893d885767156399213",
        "val/image/0.npy": "dff5d8831aa8e22fcb400efaeb491a86b0f44aaa05166f1a391498a4ad6636d7",
        "val/label/0.npy": "6df1b38b12111ad021171e22828dd55c37c82c0c2320cf8a556a070038577d79",
        "val/normal/0.npy": "10bcea2ec9466c4135bcd985a7731cf2e248b90971578048757102e72a1e9506",
    },
    "cityscapes": {
        "train/depth/0.npy": "426e1bcf3c9cea67d710a9dfa050cf44e05d8de3a3279f478dad48e0a7afe8b5",
        "train/image/0.npy": "7981d6aba230300c6bd87a46ad1725439c0ba6e1c1ebfd797669979c213276d7",
        "train/label_19/0.npy": "079514cbf62de5fc31959b09bb5debe0241fafca6d87a328e3d940c000c04e96",
        "train/label_7/0.npy": "46c391bad3a521ece707b978508a04207b6e080ea8d766a5766ca18a92016468",
        "val/depth/0.npy": "af92c6beaa9ff9836d8b091311a79368575a4cea9cce91ea3011566c5b76def9",
        "val/image/0.npy": "865d9d1dc8c41703a0c4c5707380e033741f3e20adf5848ad170bd3bd15a9887",
        "val/label_19/0.npy": "fcb064e7630993f70d1663134148cc869ca4f30ec39167a640336d04c9a52caf",
        "val/label_7/0.npy": "46a2f339c686f620443aa08f2b4ea187965a8c9e078077f7a64bc7fe84d48af7",
    },
}


def _digests(root):
    """sha256 of every file under `root` by relative path, sorted; .mat time stamps masked."""
    digests = {}
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".mat":
            stamp = data.index(b"Created on: ", 0, 116) + len(b"Created on: ")
            assert data[stamp:stamp + 24] == MAT_TIME, path  # no clock in the output
            data = data[:stamp] + b"#" * 24 + data[stamp + 24:]  # time.asctime() is 24 characters
        digests[path.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return digests


@pytest.mark.parametrize("layout", list(DIGESTS))
def test_a_fixed_seed_writes_the_recorded_files(tmp_path, layout):
    digests = _digests(generate(layout, str(tmp_path), 1, 1, (32, 48), seed=3))
    assert list(digests) == list(DIGESTS[layout])
    changed = [name for name, digest in digests.items() if digest != DIGESTS[layout][name]]
    assert not changed, f"{layout}: these files differ from the recorded ones: {changed}"


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    first, second = (generate("pascal", str(tmp_path / name), 1, 1, (32, 48), seed=5) for name in ("a", "b"))
    files = sorted(p.relative_to(first) for p in Path(first).rglob("*") if p.is_file())
    assert any(f.suffix == ".mat" for f in files)
    assert all((Path(first) / f).read_bytes() == (Path(second) / f).read_bytes() for f in files)


def test_the_package_runs_as_a_command():
    """`python -m data.synthetic` runs the package's __main__ (no runpy warning on stderr)."""
    result = subprocess.run([sys.executable, "-m", "data.synthetic", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: python -m data.synthetic ")
    assert "--layout {pascal,nyud,nyud_mtan,cityscapes}" in result.stdout
