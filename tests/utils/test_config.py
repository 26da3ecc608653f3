"""Config loading: defaults, derived fields, overrides and every rejection path."""
import pytest

from utils.config import DB_ROOT_ENV, load_config
from utils.errors import ConfigError


def write(tmp_path, text, name="cfg.yml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BASE = """
db_root: /data
task_dictionary:
  include_semseg: true
  include_normals: true
"""


def test_defaults_and_derived_fields(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.TASKS.NAMES == ["semseg", "normals"]
    assert cfg.TASKS.NUM_OUTPUT == {"semseg": 21, "normals": 3}
    assert cfg.train_db_dir == "/data/PASCALContext"
    assert cfg.run_dir == "work_dirs/diffusionmtl"
    assert cfg.edge_maxdist == 0.0075
    assert cfg.optimizer_kwargs.lr == 2e-5 and cfg.trBatch == 6 and cfg.num_timesteps == 2


def test_task_order_is_canonical_whatever_the_file_order(tmp_path):
    text = """
db_root: /data
train_db_name: NYUD
val_db_name: NYUD
task_dictionary: {include_edge: true, include_normals: true, include_depth: true, include_semseg: true}
"""
    cfg = load_config(write(tmp_path, text))
    assert cfg.TASKS.NAMES == ["semseg", "depth", "normals", "edge"]
    assert cfg.TASKS.NUM_OUTPUT["semseg"] == 40
    assert cfg.edge_maxdist == 0.011
    assert cfg.train_db_dir == "/data/NYUDv2"


def test_overrides_nested_and_typed(tmp_path):
    cfg = load_config(write(tmp_path, BASE), opts=["trBatch=3", "optimizer_kwargs.lr=1e-3",
                                                   "model_kwargs.variant=prediction", "max_iter=7",
                                                   "output_dir=/tmp/out", "ssl_type=randomlabels"])
    assert cfg.trBatch == 3 and cfg.optimizer_kwargs.lr == 1e-3 and cfg.max_iter == 7
    assert cfg.model_kwargs.variant == "prediction" and cfg.ssl_type == "randomlabels"
    assert cfg.run_dir == "/tmp/out/diffusionmtl"


def test_unknown_key_names_key_file_and_closest(tmp_path):
    path = write(tmp_path, BASE + "trbatch: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "trbatch" in message and path in message and "trBatch" in message


def test_unknown_nested_key_and_override(tmp_path):
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError, match="optimizer_kwargs.learning_rate"):
        load_config(path, opts=["optimizer_kwargs.learning_rate=0.1"])
    with pytest.raises(ConfigError, match="did you mean 'model_kwargs.embed_dim'"):
        load_config(path, opts=["model_kwargs.embed_dims=3"])


@pytest.mark.parametrize("override, key", [
    ("trBatch=two", "trBatch"),
    ("trBatch=2.5", "trBatch"),
    ("amp=1", "amp"),
    ("optimizer=rmsprop", "optimizer"),
    ("train_size=[64]", "train_size"),
    ("model_kwargs.variant=noise", "model_kwargs.variant"),
    ("trBatch=0", "trBatch"),
    ("task_dictionary=3", "task_dictionary"),
])
def test_wrong_types_and_values_are_rejected(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, BASE), opts=[override])


def test_int_accepted_for_float(tmp_path):
    cfg = load_config(write(tmp_path, BASE), opts=["optimizer_kwargs.lr=1"])
    assert isinstance(cfg.optimizer_kwargs.lr, float)


def test_task_not_on_dataset(tmp_path):
    with pytest.raises(ConfigError, match="depth"):
        load_config(write(tmp_path, BASE + "  include_depth: true\n"))


def test_partial_labels_need_two_tasks(tmp_path):
    text = "db_root: /d\nssl_type: onelabel\ntask_dictionary: {include_semseg: true}\n"
    with pytest.raises(ConfigError, match="at least two tasks"):
        load_config(write(tmp_path, text))
    assert load_config(write(tmp_path, text), opts=["ssl_type=full"]).TASKS.NAMES == ["semseg"]


def test_db_root_from_environment(tmp_path, monkeypatch):
    text = "task_dictionary: {include_semseg: true, include_sal: true}\n"
    path = write(tmp_path, text)
    monkeypatch.delenv(DB_ROOT_ENV, raising=False)
    with pytest.raises(ConfigError, match=DB_ROOT_ENV):
        load_config(path)
    monkeypatch.setenv(DB_ROOT_ENV, "/env/root")
    assert load_config(path).val_db_dir == "/env/root/PASCALContext"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yml"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="key=value"):
        load_config(write(tmp_path, BASE), opts=["trBatch"])


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, BASE + "version_name: !!python/object/apply:os.system ['true']\n"))


def test_shipped_configs_load():
    import glob
    paths = sorted(glob.glob("configs/**/*.yml", recursive=True))
    assert len(paths) >= 9
    for path in paths:
        cfg = load_config(path, opts=["db_root=."])
        assert cfg.TASKS.NAMES


def test_best_metric_default_and_validation(tmp_path):
    assert load_config(write(tmp_path, BASE)).best_metric == "semseg.mIoU"
    with_ref = BASE + "reference_metrics: {semseg: {mIoU: 50.0}}\n"
    assert load_config(write(tmp_path, with_ref)).best_metric == "delta_m"
    with pytest.raises(ConfigError, match="needs reference_metrics"):
        load_config(write(tmp_path, BASE), opts=["best_metric=delta_m"])
    with pytest.raises(ConfigError, match="best_metric"):
        load_config(write(tmp_path, BASE), opts=["best_metric=edge.odsF"])
    with pytest.raises(ConfigError, match="edge_thresholds_train"):
        load_config(write(tmp_path, BASE), opts=["eval_kwargs.edge_thresholds_train=0"])


@pytest.mark.parametrize("override, key", [
    ("model_kwargs.embed_dim=30", "num_heads"),
    ("model_kwargs.fuse_stride=0", "fuse_stride"),
    ("model_kwargs.denoiser_depth=-1", "denoiser_depth"),
])
def test_model_shape_checks(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(write(tmp_path, BASE), opts=[override])


def test_the_config_is_frozen_after_derive_and_so_are_its_copies(tmp_path):
    import copy
    import pickle

    cfg = load_config(write(tmp_path, BASE))
    for target, key in ((cfg, "seed"), (cfg.model_kwargs, "embed_dim"), (cfg.TASKS, "NAMES")):
        with pytest.raises(TypeError, match="read-only"):
            setattr(target, key, 1)
        with pytest.raises(TypeError, match="read-only"):
            target[key] = 1
    with pytest.raises(TypeError, match="read-only"):
        cfg.optimizer_kwargs.update(lr=1.0)
    for clone in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert clone == cfg
        with pytest.raises(TypeError, match="read-only"):
            clone.model_kwargs.embed_dim = 8


def test_one_schema_row_per_key_and_the_help_lists_them():
    from utils.config import DEFAULTS, SCHEMA, describe_keys

    def leaves(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict) and f"{prefix}{key}" != "reference_metrics":
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    assert list(leaves(DEFAULTS)) == list(SCHEMA)
    text = describe_keys()
    assert "model_kwargs.variant = 'feature'  [one of feature / prediction / baseline]" in text
    assert "max_iter = None  [int or null]" in text
    assert all(SCHEMA[key].help in text for key in SCHEMA)


def test_a_scalar_where_a_mapping_belongs_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="key 'eval_kwargs' must be a mapping, got 3"):
        load_config(write(tmp_path, BASE), opts=["eval_kwargs=3"])
