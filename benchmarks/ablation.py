"""The paper's ablation (Table 2) on generated data: every variant trained by main.py itself.

    python -m benchmarks.ablation --config_exp configs/demo.yml --seeds 3 --iters 450 --out work_dirs/ablation
        [--variants baseline,no_diffusion,no_conditioning,feature,prediction] [--train 240 --val 60]
        [--size 128] [--opts key=value ...]

Writes ONE synthetic dataset in the config's on-disk layout (`data.synthetic`, into
OUT/data), then trains every (variant, seed) with `main.main` (the same engine, config
checks and run folder as any training run) in OUT/runs/<variant>_s<seed>, and reads each
run's metrics.json. The variants are config switches of the same network:

    baseline         model_kwargs.variant=baseline        (no refinement: the paper's MTL baseline)
    no_diffusion     model_kwargs.diffusion=false         (the same denoiser as an iterative refiner)
    no_conditioning  model_kwargs.conditioning=none       (each task conditioned on itself only)
    feature          feature diffusion                    (the method)
    prediction       model_kwargs.variant=prediction      (prediction diffusion; refine_from_prelim=none)

OUT/ablation.md has the headline metric of every task as mean +- std over seeds, Delta_m
of every row against the baseline row's mean, the refinement gain of every row (final -
preliminary, positive = better) at the end and at every evaluation, and whether the
paper's ordering holds; OUT/ablation.json has every run's numbers, evaluation history
(its metrics.jsonl) and wall time; OUT/ablation.png the per-task bars with error bars;
OUT/ablation_gain.png the refinement gain of every task against the iteration, one line
per variant (mean over seeds, band of +- one std).
Started again with the same arguments it resumes: a run whose metrics.json is at the last
iteration is not retrained, an interrupted one resumes from its last.pth, and a run that
OUT/ablation.json records as finished (same config, budget, data and --opts) is taken
from there even when its run folder is gone: keep ablation.json to resume elsewhere.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

import main as trainer
from data.metadata import LAYOUT_OF
from data.synthetic import generate
from engine.report import HISTORY, read_history
from evaluation import refinement_gain
from evaluation.delta_m import delta_m
from utils.cli import HelpFormatter
from utils.config import load_config
from utils.errors import ConfigError, DataError, DiffusionMTLError, one_line
from utils.files import atomic_write_json
from utils.tasks import headline_metric

# variant -> config overrides; every row sets the three switches, whatever the config says.
VARIANTS = {
    "baseline": ["model_kwargs.variant=baseline"],
    "no_diffusion": ["model_kwargs.variant=feature", "model_kwargs.diffusion=false",
                     "model_kwargs.conditioning=multitask"],
    "no_conditioning": ["model_kwargs.variant=feature", "model_kwargs.diffusion=true",
                        "model_kwargs.conditioning=none"],
    "feature": ["model_kwargs.variant=feature", "model_kwargs.diffusion=true", "model_kwargs.conditioning=multitask"],
    # refine_from_prelim concerns feature diffusion's output head, which prediction diffusion has not
    "prediction": ["model_kwargs.variant=prediction", "model_kwargs.diffusion=true",
                   "model_kwargs.conditioning=multitask", "model_kwargs.refine_from_prelim=none"],
}
REFERENCE = "baseline"  # Delta_m of every row is measured against this row's mean
METHOD = "feature"  # the paper's ordering: this row above every ablation of it
ABLATIONS = ("no_diffusion", "no_conditioning", "baseline")


# ---------------------------------------------------------------------------------------
# Data and runs
# ---------------------------------------------------------------------------------------
def prepare_data(cfg, out, n_train, n_val, size, seed):
    """The one dataset every run trains on; made once, reused when the same arguments come again."""
    if cfg.train_db_name not in LAYOUT_OF:
        raise ConfigError(f"no synthetic layout for train_db_name {cfg.train_db_name}")
    db_root = os.path.join(out, "data")
    recipe = {"layout": LAYOUT_OF[cfg.train_db_name], "train": n_train, "val": n_val, "size": list(size),
              "seed": seed}
    recipe_path = os.path.join(db_root, "recipe.json")
    if os.path.isfile(recipe_path):
        with open(recipe_path, encoding="utf-8") as handle:
            made = json.load(handle)
        if made != recipe:
            raise DataError(f"{db_root} holds a dataset made with {made}, not {recipe}: use another --out "
                            f"or delete {db_root}")
        return db_root
    print(f"generating {n_train} train + {n_val} val {recipe['layout']} images of {size[0]}x{size[1]} "
          f"in {db_root} ...", file=sys.stderr)
    generate(recipe["layout"], db_root, n_train, n_val, tuple(size), seed, force=True)
    write_json(recipe_path, recipe)
    return db_root


def read_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_run(run_dir, recorded, iters):
    """A finished run: (metrics, history) from its run folder, else from the entry an earlier
    invocation recorded in ablation.json (so a committed ablation.json resumes without the
    run folders); None when the run has not reached `iters`."""
    metrics = read_metrics(run_dir)
    if metrics is not None and metrics.get("iteration") == iters:
        return metrics, read_history(os.path.join(run_dir, HISTORY))
    if recorded and (recorded.get("metrics") or {}).get("iteration") == iters:
        return recorded["metrics"], recorded.get("history", [])
    return None


def train_run(args, db_root, variant, seed, recorded=None):
    """Train (or finish) one run with main.py's engine. -> (metrics, history, seconds, trained)"""
    name = f"{variant}_s{seed}"
    run_dir = os.path.join(args.out, "runs", name)
    finished = read_run(run_dir, recorded, args.iters)
    if finished is not None:
        return (*finished, None, False)
    opts = [f"output_dir={os.path.join(args.out, 'runs')}", f"version_name={name}", f"seed={seed}",
            f"max_iter={args.iters}", f"db_root={db_root}",
            "partial_labels_file=",  # generated image ids: a seeded split, never a paper config's official one
            *args.opts, *VARIANTS[variant]]
    started = time.time()
    status = trainer.main(["--config_exp", args.config_exp, "--run_mode", "train", "--opts", *opts])
    seconds = time.time() - started
    metrics = read_metrics(run_dir)
    if status != 0 or metrics is None or metrics.get("iteration") != args.iters:
        raise RunFailed(f"run {name} stopped with exit status {status} before iteration {args.iters} "
                        f"(see {os.path.join(run_dir, 'log.txt')}); run the same command to resume it", status)
    return metrics, read_history(os.path.join(run_dir, HISTORY)), seconds, True


class RunFailed(Exception):
    """A training run exited early; carries main.py's exit status."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status or 1


# ---------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------
def headline_columns(dataset, tasks):
    """[(task, metric, lower is better)] in the config's task order."""
    return [(task, *headline_metric(dataset, task)) for task in tasks]


def mean_std(values):
    """(mean, sample std) of the finite values; std NaN for one value (no spread measured), both for none."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def summarise(runs, columns, dataset):
    """runs: {variant: {seed: {"metrics", "seconds"}}} -> {variant: row of (mean, std) pairs}.

    Delta_m of each run is taken against the baseline row's mean headline metrics (the
    paper's column is against single-task models, which this benchmark does not train);
    the refinement gain of Delta_m is that of the final minus that of the preliminary
    predictions, against the same reference.
    """
    reference = None
    if REFERENCE in runs:  # a task whose baseline scores 0 has no relative change: left out
        means = {(task, metric): mean_std([r["metrics"][task][metric] for r in runs[REFERENCE].values()])[0]
                 for task, metric, _ in columns}
        reference = {task: {metric: value} for (task, metric), value in means.items() if value}
    rows = {}
    for variant, seeds in runs.items():
        results = [r["metrics"] for r in seeds.values()]
        prelims = [m["prelim"] for m in results if "prelim" in m]
        row = {"seeds": sorted(seeds), "metrics": {}, "prelim": {}, "refinement_gain": {}}
        for task, metric, _ in columns:
            key = f"{task}.{metric}"
            row["metrics"][key] = mean_std([m[task][metric] for m in results])
            row["prelim"][key] = mean_std([p[task][metric] for p in prelims])
            row["refinement_gain"][key] = mean_std([refinement_gain(m)[task][metric] for m in results if "prelim" in m])
        if reference:
            row["delta_m"] = mean_std([delta_m(m, reference, dataset) for m in results])
            row["refinement_gain"]["delta_m"] = mean_std(
                [delta_m(m, reference, dataset) - delta_m(m["prelim"], reference, dataset)
                 for m in results if "prelim" in m])
        row["seconds"] = mean_std([r["seconds"] for r in seeds.values()])
        rows[variant] = row
    return rows


def ordering(rows):
    """The paper's claim, row by row: METHOD above each ablation in Delta_m by more than
    twice the larger spread over seeds. -> [(ablation, gap, 2 x larger std, holds)]; with
    one seed the spread is unknown (NaN) and the claim does not hold."""
    if METHOD not in rows or "delta_m" not in rows[METHOD]:
        return []
    mean, std = rows[METHOD]["delta_m"]
    checks = []
    for other in ABLATIONS:
        if other in rows:
            other_mean, other_std = rows[other]["delta_m"]
            margin = 2 * max(std, other_std) if not math.isnan(std + other_std) else math.nan
            checks.append((other, mean - other_mean, margin, mean - other_mean > margin))
    return checks


def _cell(pair, digits=2, signed=False):
    mean, std = pair
    if math.isnan(mean):
        return "n/a"
    text = f"{mean:{'+' if signed else ''}.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {std:.{digits}f}"


def markdown(rows, columns, header, checks):
    names = [f"{task} {metric} {'↓' if lower else '↑'}" for task, metric, lower in columns]
    lines = [header, "", "Final predictions, mean ± std over seeds; Delta_m against the baseline row's mean (%).", "",
             "| variant | " + " | ".join(names) + " | Delta_m (%) | min / run |",
             "|---" * (len(names) + 3) + "|"]
    for variant, row in rows.items():
        cells = [_cell(row["metrics"][f"{t}.{m}"]) for t, m, _ in columns]
        minutes = row["seconds"][0] / 60 if not math.isnan(row["seconds"][0]) else math.nan
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {_cell(row.get('delta_m', (math.nan,) * 2), signed=True)}"
                     f" | {'n/a' if math.isnan(minutes) else f'{minutes:.1f}'} |")
    lines += ["", "Refinement gain (final - preliminary; positive = the refinement stage helped), "
              "mean ± std over seeds.", "",
              "| variant | " + " | ".join(f"{t} {m}" for t, m, _ in columns) + " | Delta_m (points) |",
              "|---" * (len(columns) + 2) + "|"]
    for variant, row in rows.items():
        cells = [_cell(row["refinement_gain"][f"{t}.{m}"], signed=True) for t, m, _ in columns]
        lines.append(f"| {variant} | " + " | ".join(cells)
                     + f" | {_cell(row['refinement_gain'].get('delta_m', (math.nan,) * 2), signed=True)} |")
    if checks:
        lines += ["", f"The paper's ordering ({METHOD} above each ablation in Delta_m by more than 2 x the larger "
                  "std over seeds):", ""]
        lines += [f"- {METHOD} vs {other}: gap {gap:+.2f}, "
                  + ("spread unknown with one seed" if math.isnan(margin) else f"needed > {margin:.2f}")
                  + f": {'holds' if holds else 'does not hold'}" for other, gap, margin, holds in checks]
    return "\n".join(lines) + "\n"


def figure(rows, columns, path):
    """Per-task bars (final, mean ± std over seeds) per variant, the preliminary mean as a dot."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = [(f"{t}.{m}", f"{t} {m} ({'lower' if lower else 'higher'} is better)") for t, m, lower in columns]
    if all("delta_m" in row for row in rows.values()):
        panels.append(("delta_m", "Delta_m vs baseline (%)"))
    variants = list(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, (key, title) in zip(axes[0], panels):
        stats = [rows[v]["delta_m"] if key == "delta_m" else rows[v]["metrics"][key] for v in variants]
        ax.bar(range(len(variants)), [s[0] for s in stats], yerr=[np.nan_to_num(s[1]) for s in stats], capsize=3,
               color=[colours[i % len(colours)] for i in range(len(variants))])
        if key != "delta_m":
            ax.plot(range(len(variants)), [rows[v]["prelim"][key][0] for v in variants], "k.", label="preliminary")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(variants)), variants, rotation=40, ha="right", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gain_curves(runs, columns):
    """{variant: {task.metric: [(iteration, mean, std, n_seeds)]}}: the refinement gain at
    every evaluation of the runs' histories, over the seeds evaluated at that iteration.
    The MTL baseline has no refinement stage (its gain is 0 by construction): left out."""
    curves = {}
    for variant, by_seed in runs.items():
        if variant == REFERENCE:
            continue
        per_key = {f"{t}.{m}": {} for t, m, _ in columns}
        for run in by_seed.values():
            for line in run.get("history") or []:
                gain = refinement_gain(line)
                for task, metric, _ in columns:
                    if task in gain and metric in gain[task]:
                        per_key[f"{task}.{metric}"].setdefault(line["iteration"], []).append(gain[task][metric])
        curves[variant] = {key: [(it, *mean_std(values), len(values)) for it, values in sorted(points.items())]
                           for key, points in per_key.items()}
    return curves


def gain_markdown(curves, columns):
    """The refinement gain at every evaluation, mean ± std over seeds, one table per variant."""
    lines = []
    for variant, per_key in curves.items():
        iterations = sorted({point[0] for points in per_key.values() for point in points})
        if not iterations:
            continue
        lines += ["", f"Refinement gain of {variant} over training (final - preliminary, + = better), "
                  "mean ± std over seeds:", "",
                  "| iteration | " + " | ".join(f"{t} {m}" for t, m, _ in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for iteration in iterations:
            cells = []
            for task, metric, _ in columns:
                point = next((p for p in per_key[f"{task}.{metric}"] if p[0] == iteration), None)
                cells.append("n/a" if point is None else _cell(point[1:3], signed=True))
            lines.append(f"| {iteration} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n" if lines else "")


def gain_figure(curves, columns, path, title):
    """One panel per task: the refinement gain against the iteration, a line per variant
    (mean over seeds) with a band of ± one std."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 3.4), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, (task, metric, lower) in zip(axes[0], columns):
        for index, (variant, per_key) in enumerate(curves.items()):
            points = [p for p in per_key[f"{task}.{metric}"] if p[0] > 0]
            if not points:
                continue
            x = np.array([p[0] for p in points], dtype=float)
            mean = np.array([p[1] for p in points])
            std = np.nan_to_num(np.array([p[2] for p in points]))
            colour = colours[(index + 1) % len(colours)]  # the bar figure's colours, baseline (0) left out
            ax.plot(x, mean, marker=".", color=colour, label=variant)
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_title(f"{task} {metric}\n(gain in points; the metric: {'lower' if lower else 'higher'} is better)",
                     fontsize=8)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("refinement gain", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plain(value):
    """NaN (no value, or no spread over one seed) -> null: ablation.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def write_json(path, payload):
    atomic_write_json(path, _plain(payload), indent=2, allow_nan=False)


def settings(args, size):
    """What makes two invocations the same ablation (their runs are interchangeable)."""
    return {"config": args.config_exp, "iters": args.iters, "train": args.train, "val": args.val,
            "size": list(size), "data_seed": args.data_seed, "opts": list(args.opts)}


def recorded_runs(json_path, expected):
    """{name: entry} of the runs an ablation.json with the settings `expected` records ({} otherwise)."""
    if not os.path.isfile(json_path):
        return {}
    with open(json_path, encoding="utf-8") as handle:
        recorded = json.load(handle)
    if any(recorded.get(k) != v for k, v in expected.items()):
        return {}
    return recorded.get("runs", {})


def merge_runs(recorded, runs):
    """`runs` ({variant: {seed: run}}) plus the recorded runs it does not have, in VARIANTS order."""
    merged = {variant: dict(by_seed) for variant, by_seed in runs.items() if by_seed}
    for entry in recorded.values():
        merged.setdefault(entry["variant"], {}).setdefault(entry["seed"], {
            k: entry.get(k) for k in ("metrics", "seconds", "history")})
    return {variant: dict(sorted(merged[variant].items())) for variant in VARIANTS if variant in merged}


def write_outputs(args, cfg, runs, size):
    """ablation.json (every run with its evaluation history), ablation.md (the tables),
    ablation.png (the final bars) and ablation_gain.png (the refinement gain over training)."""
    columns = headline_columns(cfg.val_db_name, cfg.TASKS.NAMES)
    rows = summarise(runs, columns, cfg.val_db_name)
    checks = ordering(rows)
    seeds = sorted({s for r in runs.values() for s in r})
    write_json(os.path.join(args.out, "ablation.json"), {
        **settings(args, size),
        "runs": {f"{v}_s{s}": {"variant": v, "seed": s, **r} for v, by_seed in runs.items() for s, r in by_seed.items()},
        "rows": rows, "ordering": [dict(zip(("ablation", "gap", "needed", "holds"), c)) for c in checks]})
    opts = f", --opts {' '.join(args.opts)}" if args.opts else ""
    header = (f"# Ablation: {args.config_exp}, {args.iters} iterations, seeds {', '.join(map(str, seeds))}, "
              f"{args.train} train / {args.val} val generated images at {size[0]}x{size[1]}, ssl_type {cfg.ssl_type}"
              f"{opts}")
    curves = gain_curves(runs, columns)
    with open(os.path.join(args.out, "ablation.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown(rows, columns, header, checks) + gain_markdown(curves, columns))
    figure(rows, columns, os.path.join(args.out, "ablation.png"))
    gain_figure(curves, columns, os.path.join(args.out, "ablation_gain.png"),
                f"{args.config_exp}, {args.iters} iterations, seeds {', '.join(map(str, seeds))}: "
                "refinement gain (final - preliminary, + = the refinement stage helped)")


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--config_exp", required=True, help="YAML experiment config (its model, budget and tasks)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated rows to train")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per variant")
    parser.add_argument("--first_seed", type=int, default=0,
                        help="train only seeds first_seed..N-1 (another invocation, with the same settings, "
                             "can train the others in parallel; ablation.json gathers all)")
    parser.add_argument("--iters", type=int, default=450, help="training iterations of every run (max_iter)")
    parser.add_argument("--out", required=True, help="folder for the dataset, the run folders and the results")
    parser.add_argument("--train", type=int, default=240, help="generated training images")
    parser.add_argument("--val", type=int, default=60, help="generated validation images")
    parser.add_argument("--size", type=int, nargs="+", default=None,
                        help="generated image size, S or H W (default: the config's train_size)")
    parser.add_argument("--data_seed", type=int, default=0, help="seed of the generated dataset")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides applied to every run (the same settings for every variant)")
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    if args.seeds < 1 or args.iters < 1:
        parser.error("--seeds and --iters must be >= 1")
    if not 0 <= args.first_seed < args.seeds:
        parser.error(f"--first_seed must be in 0..{args.seeds - 1}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args.config_exp, ["db_root=.", *args.opts])
        size = tuple(args.size * 2 if args.size and len(args.size) == 1 else args.size or cfg.train_size)
        db_root = prepare_data(cfg, args.out, args.train, args.val, size, args.data_seed)
    except DiffusionMTLError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    json_path = os.path.join(args.out, "ablation.json")
    previous = recorded_runs(json_path, settings(args, size))  # finished by an earlier invocation
    # seed by seed: an ablation stopped early still has every variant at the seeds it finished
    jobs = [(variant, seed) for seed in range(args.first_seed, args.seeds) for variant in args.variants]
    runs = {variant: {} for variant in args.variants}
    started, trained_seconds, trained_count = time.time(), 0.0, 0
    for number, (variant, seed) in enumerate(jobs, 1):
        # One line per run (no progress bar: the runs' own log lines would break it up).
        left = ""
        if trained_count:
            left = f", about {(len(jobs) - number + 1) * trained_seconds / trained_count / 60:.0f} min left"
        print(f"ablation: run {number}/{len(jobs)}: {variant} seed {seed} "
              f"({(time.time() - started) / 60:.1f} min so far{left})", file=sys.stderr, flush=True)
        # finished by an earlier invocation, or (ablation.json read again) by one running beside this one
        recorded = previous.get(f"{variant}_s{seed}") or recorded_runs(json_path, settings(args, size)).get(
            f"{variant}_s{seed}")
        try:
            metrics, history, seconds, trained = train_run(args, db_root, variant, seed, recorded)
        except RunFailed as err:
            print(f"error: {err}", file=sys.stderr)
            return err.status
        if trained:
            trained_seconds, trained_count = trained_seconds + seconds, trained_count + 1
        else:
            seconds = (recorded or {}).get("seconds")
        runs[variant][seed] = {"metrics": metrics, "seconds": seconds, "history": history}
        state = "trained in " + (f"{seconds / 60:.1f} min" if trained else "an earlier invocation")
        print(f"ablation: {variant} seed {seed} {state}", file=sys.stderr, flush=True)
        # Runs that another invocation with the same settings finished (another --variants
        # list, in parallel) are kept: ablation.json gathers the whole ablation.
        others = recorded_runs(json_path, settings(args, size))
        write_outputs(args, cfg, merge_runs(others, runs), size)
    print(f"wrote {os.path.join(args.out, 'ablation.md')}, ablation.json, ablation.png and ablation_gain.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
