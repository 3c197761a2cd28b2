#!/usr/bin/env python3
"""Tunes a few settings per model on a validation part of Census's *training* rows, then
evaluates the chosen settings once on the held-out rows (docs/experiments.md, "Tuning").

The validation split never touches the evaluation rows: the training rows of the 70/30 re-split
(line i with i % 10 < 7) are written out again and converted with a second split rule (their
line j goes to validation when j % 7 == 6), so vocabularies and statistics come from the
remaining training rows only.

  tools/experiments/census_tuning.py --cli build/tools/drgrad [--seeds 3] [--final-seeds 5]
"""
import argparse
import gzip
import itertools
import json
import pathlib
import re
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
CENSUS = ROOT.parent / "shared" / "data" / "census" / "census-income.test.gz"

# model -> (base overrides, grid of overrides to tune)
GRIDS = {
    "MMoE": ([], {"optimizer.learning_rate": ["5e-4", "1e-3", "2e-3"]}),
    "PLE": (["model.backbone=ple", "model.ple_levels=2", "model.task_experts=2",
             "model.shared_experts=2"], {"optimizer.learning_rate": ["5e-4", "1e-3", "2e-3"]}),
    "DRGrad": (["model.split_towers=true", "strategy.name=drgrad"],
               {"strategy.gamma": ["0.5", "1.0", "2.0"], "strategy.rho": ["1.0", "0.99"],
                "strategy.router_form": ["paper", "paired"]}),
}


def prepare_validation(folder, cli):
    folder.mkdir(parents=True, exist_ok=True)
    rows = folder / "census-train-rows.csv"
    with gzip.open(CENSUS, "rt") as source, open(rows, "w") as target:
        for index, line in enumerate(source):
            if index % 10 < 7:
                target.write(line)
    schema = (ROOT / "configs" / "census_schema.toml").read_text()
    schema = re.sub(r"modulus = 10", "modulus = 7", schema)
    schema = re.sub(r"train_below = 7", "train_below = 6", schema)
    (folder / "schema.toml").write_text(schema)
    subprocess.run([cli, "convert", str(rows), "--schema", str(folder / "schema.toml"),
                    "--output", str(folder)], check=True, cwd=ROOT, capture_output=True)
    return str(folder / "train-00000.drgrad"), str(folder / "eval-00000.drgrad")


def train(cli, overrides, seed, run_dir):
    command = [cli, "train", "--config", "configs/census_mmoe.toml"]
    for item in overrides + [f"training.seed={seed}", f"output.run_dir={run_dir}",
                             "output.save_checkpoints=false", "training.log_every=0",
                             "strategy.telemetry_every=0"]:
        command += ["--set", item]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}\n{result.stdout}\n{result.stderr}")
    final = json.loads((ROOT / run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    return {task["name"]: task["auc"] for task in final["tasks"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cli", default=str(ROOT / "build" / "tools" / "drgrad"))
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting while tuning")
    parser.add_argument("--final-seeds", type=int, default=5)
    parser.add_argument("--output", help="write the Markdown here (else stdout)")
    args = parser.parse_args()
    train_file, validation_file = prepare_validation(ROOT / "data" / "census-tuning", args.cli)
    on_validation = [f'data.train_files=["{train_file}"]', f'data.eval_files=["{validation_file}"]']
    lines = ["| model | settings tried | chosen (validation income AUC) | held-out income AUC | "
             "held-out never-married AUC |", "|---|---|---|---|---|"]
    for model, (base, grid) in GRIDS.items():
        keys = list(grid)
        scored = []
        for values in itertools.product(*(grid[k] for k in keys)):
            setting = [f"{k}={v}" for k, v in zip(keys, values)]
            aucs = [train(args.cli, on_validation + base + setting, seed,
                          f"runs/tuning/{model}-{'-'.join(values)}-{seed}")["income"]
                    for seed in range(1, args.seeds + 1)]
            scored.append((statistics.mean(aucs), setting))
            print(model, setting, f"{statistics.mean(aucs):.4f}", file=sys.stderr)
        best_score, best = max(scored)
        final = [train(args.cli, base + best, seed, f"runs/tuning/{model}-final-{seed}")
                 for seed in range(1, args.final_seeds + 1)]
        def cell(task):
            values = [f[task] for f in final]
            return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
        tried = "; ".join(f"{k} in {{{', '.join(v)}}}" for k, v in grid.items())
        lines.append(f"| {model} | {tried} | {' '.join(best)} ({best_score:.4f}) | "
                     f"{cell('income')} | {cell('never_married')} |")
    text = "\n".join(lines) + "\n"
    if args.output:
        pathlib.Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
