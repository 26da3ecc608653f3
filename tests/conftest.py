"""Fixtures shared by the test files, so that every file does not rebuild its own.

- `tiny_opts`: the one list of `--opts` strings that shrinks a config to a model that
  trains, evaluates and infers on one CPU thread in seconds (64 x 64 inputs, a 16-channel
  decoder, one denoiser block, batches of two, no loader workers, three boundary
  thresholds, no evaluation of the untrained model). Tests that run main.py / run.sh /
  inference.py pass it on the command line; tests that build a model in-process use
  `tiny_cfg`. Keys a test depends on (max_iter, val_interval, ...) are added by the test,
  after these, so they win. Some tests state these values (the 64 x 64 canvas in
  test_inference.py, embed_dim 16 in test_user_path.py): change them together.
- `tiny_cfg(*extra_opts, config="configs/demo.yml")`: that config loaded with `tiny_opts`,
  then `extra_opts`, with `db_root=.` so that configs without one load (nothing reads the
  dataset until a test passes its own db_root).
- `pascal_db`, `nyud_db`, `nyud_mtan_db`, `cityscapes_db`: one synthetic dataset per
  layout (data.synthetic), generated once per session with the counts, size and seed of
  `SYNTHETIC`. They are shared by every test that asks for them, so a test must not write
  into one: a test that edits, corrupts or deletes files takes `dataset.copy_to(tmp_path)`.
  Each session dataset is checked at the end of the session (file list, sizes, modification
  times), and a change is reported as an error naming the files. Tests that need another
  count, size or seed (the generator's own tests, size-specific transform checks) call
  `data.synthetic.generate` themselves.
- `process_state_guard` (autouse): no test leaves process-wide state changed for the tests
  after it (thread counts, environment, signal handlers, working directory, dtype and
  deterministic flags, logger handlers, threads and child processes: tests/process_state.py);
  the global random generators are seeded before each test and restored after it.
"""
import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torchvision  # noqa: F401  its import sets $TORCHINDUCTOR_CACHE_DIR: done here, before any test's snapshot

from data.synthetic import generate
from tests import process_state
from utils.config import load_config

REPO = Path(__file__).resolve().parents[1]

TINY_OPTS = ("trBatch=2", "valBatch=2", "nworkers=0", "train_size=[64,64]", "val_size=[64,64]", "log_interval=1",
             "backbone_kwargs.pretrained=null", "backbone_kwargs.num_taps=2", "model_kwargs.embed_dim=16",
             "model_kwargs.num_heads=2", "model_kwargs.denoiser_depth=1", "model_kwargs.prelim_blocks=1",
             "model_kwargs.head_convs=1", "model_kwargs.token_stride=2", "eval_kwargs.edge_workers=1",
             "eval_kwargs.edge_thresholds_train=3", "eval_kwargs.edge_thresholds_infer=3", "eval_at_start=false",
             "partial_labels_file=")

# layout -> (train images, val images, (H, W), seed) of the session datasets
SYNTHETIC = {"pascal": (12, 4, (64, 64), 0), "nyud": (4, 2, (40, 56), 2), "nyud_mtan": (11, 2, (32, 48), 2),
             "cityscapes": (7, 3, (32, 64), 2)}


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
    """A generated dataset: `db_root` is what a config's db_root names, `root` the dataset
    folder inside it (PASCALContext, NYUDv2, nyuv2, cityscapes); the rest are the arguments
    it was generated with, so tests count and size against them."""
    layout: str
    db_root: Path
    root: Path
    n_train: int
    n_val: int
    size: tuple
    seed: int

    def copy_to(self, folder):
        """A private copy under `folder` (a test's tmp_path) that the test may damage."""
        folder = Path(folder)
        shutil.copytree(self.root, folder / self.root.name)
        return dataclasses.replace(self, db_root=folder, root=folder / self.root.name)


def _fingerprint(root):
    return {os.path.relpath(os.path.join(folder, name), root): (os.stat(os.path.join(folder, name)).st_size,
                                                               os.stat(os.path.join(folder, name)).st_mtime_ns)
            for folder, _, names in os.walk(root) for name in names}


def _session_dataset(layout, tmp_path_factory):
    n_train, n_val, size, seed = SYNTHETIC[layout]
    db_root = tmp_path_factory.mktemp(f"{layout}_db")
    root = Path(generate(layout, str(db_root), n_train, n_val, size, seed))
    before = _fingerprint(root)
    yield SyntheticDataset(layout, db_root, root, n_train, n_val, size, seed)
    after = _fingerprint(root)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if changed:
        pytest.fail(f"a test wrote into the shared {layout} dataset ({', '.join(changed[:5])}); "
                    f"give it dataset.copy_to(tmp_path)")


@pytest.fixture(autouse=True)
def process_state_guard(request):
    """Fails the test that changed process-wide state (at its teardown), naming what changed."""
    before = process_state.snapshot()
    with process_state.seeded_rng():
        yield
    leaked = process_state.changes(before)
    if leaked:
        process_state.restore(before)
        pytest.fail(f"{request.node.nodeid} left process-wide state changed: " + "; ".join(leaked), pytrace=False)


@pytest.fixture(scope="session")
def tiny_opts():
    return TINY_OPTS


@pytest.fixture(scope="session")
def tiny_cfg():
    def load(*extra_opts, config="configs/demo.yml"):
        return load_config(str(REPO / config), opts=["db_root=.", *TINY_OPTS, *extra_opts])
    return load


@pytest.fixture(scope="session")
def pascal_db(tmp_path_factory):
    yield from _session_dataset("pascal", tmp_path_factory)


@pytest.fixture(scope="session")
def nyud_db(tmp_path_factory):
    yield from _session_dataset("nyud", tmp_path_factory)


@pytest.fixture(scope="session")
def nyud_mtan_db(tmp_path_factory):
    yield from _session_dataset("nyud_mtan", tmp_path_factory)


@pytest.fixture(scope="session")
def cityscapes_db(tmp_path_factory):
    yield from _session_dataset("cityscapes", tmp_path_factory)
