#!/usr/bin/env python3
# PyTorch peer of bench/train_throughput_bench.cc: the same MMoE on the same Census-shaped data
# (read from the file the drgrad bench writes with --write-data), timed the same way (warm-up,
# several runs, median samples/s), on the CPU with the same thread count.
import argparse
import datetime
import json
import os
import platform
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as functional
from torch import nn


def read_dataset(path):
    """Reads the layout written by train_throughput_bench --write-data (see write_dataset)."""
    with open(path, "rb") as handle:
        magic = handle.read(10)
        if magic != b"DRGBENCH1\n":
            sys.exit(f"{path}: not a train_throughput_bench dataset (magic {magic!r}); "
                     "write one with train_throughput_bench --write-data FILE")
        samples, num_dense, num_slots, num_labels = struct.unpack("<4q", handle.read(32))
        vocabularies = list(struct.unpack(f"<{num_slots}q", handle.read(8 * num_slots)))
        dense = np.fromfile(handle, dtype="<f4", count=samples * num_dense)
        labels = np.fromfile(handle, dtype="<f4", count=samples * num_labels)
        ids = np.fromfile(handle, dtype="<i8", count=samples * num_slots)
    if ids.size != samples * num_slots:
        sys.exit(f"{path}: truncated ({ids.size} of {samples * num_slots} ids); write it again")
    return (vocabularies, dense.reshape(samples, num_dense), labels.reshape(samples, num_labels),
            ids.reshape(num_slots, samples))


def xavier_uniform_(weight, fan_in, fan_out):
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    with torch.no_grad():
        weight.uniform_(-bound, bound)


class Mmoe(nn.Module):
    """Embedding bags (sum) per slot, concatenated after the dense block; experts computed as
    one batched product ([experts, batch, width], like drgrad); a softmax gate per task over the
    experts; a tower per task ending in one logit."""

    def __init__(self, vocabularies, num_dense, embedding_dim, num_experts, expert_units,
                 tower_units, num_tasks, fused_embeddings=False):
        super().__init__()
        # fused: one table holding every slot's rows one after the other, looked up once for all
        # slots (one id per sample and slot, so each bag is a single row).
        self.fused_embeddings = fused_embeddings
        self.embedding_dim = embedding_dim
        tables = [sum(vocabularies)] if fused_embeddings else vocabularies
        self.embeddings = nn.ModuleList(
            nn.EmbeddingBag(v, embedding_dim, mode="sum") for v in tables)
        for bag in self.embeddings:
            nn.init.uniform_(bag.weight, -0.05, 0.05)
        width = num_dense + embedding_dim * len(vocabularies)
        self.expert_weights = nn.ParameterList()
        self.expert_biases = nn.ParameterList()
        for units in expert_units:
            weight = nn.Parameter(torch.empty(num_experts, width, units))
            xavier_uniform_(weight, width, units)
            self.expert_weights.append(weight)
            self.expert_biases.append(nn.Parameter(torch.zeros(num_experts, 1, units)))
            width = units
        self.gates = nn.ModuleList(
            nn.Linear(num_dense + embedding_dim * len(vocabularies), num_experts)
            for _ in range(num_tasks))
        self.towers = nn.ModuleList()
        for _ in range(num_tasks):
            layers, tower_in = [], width
            for units in tower_units:
                layers += [nn.Linear(tower_in, units), nn.ReLU()]
                tower_in = units
            layers.append(nn.Linear(tower_in, 1))
            self.towers.append(nn.Sequential(*layers))
        for module in list(self.gates) + [m for t in self.towers for m in t]:
            if isinstance(module, nn.Linear):
                xavier_uniform_(module.weight, module.in_features, module.out_features)
                nn.init.zeros_(module.bias)

    def forward(self, dense, ids, offsets):
        if self.fused_embeddings:  # ids: [batch * slots], sample-major, already offset per slot
            pooled = [self.embeddings[0](ids, offsets).view(dense.shape[0], -1)]
        else:
            pooled = [bag(ids[s], offsets) for s, bag in enumerate(self.embeddings)]
        x = torch.cat([dense] + pooled, dim=1)
        hidden = x.unsqueeze(0).expand(self.expert_weights[0].shape[0], -1, -1)
        for weight, bias in zip(self.expert_weights, self.expert_biases):
            hidden = torch.relu(torch.baddbmm(bias, hidden, weight))  # [experts, batch, units]
        logits = []
        for gate, tower in zip(self.gates, self.towers):
            probabilities = torch.softmax(gate(x), dim=1)  # [batch, experts]
            mixed = torch.einsum("be,ebd->bd", probabilities, hidden)
            logits.append(tower(mixed))
        return torch.cat(logits, dim=1)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mib():
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return -1.0


def load_average():
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "unknown"


def main():
    parser = argparse.ArgumentParser(
        description="PyTorch MMoE training throughput on a train_throughput_bench dataset")
    parser.add_argument("--data", required=True,
                        help="dataset written by train_throughput_bench --write-data")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--embedding-dim", type=int, default=4)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--expert-units", default="64")
    parser.add_argument("--tower-units", default="32")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--embeddings", choices=("per_slot", "fused"), default="per_slot",
                        help="one EmbeddingBag per slot (like drgrad), or one table for all")
    parser.add_argument("--json")
    options = parser.parse_args()

    if options.threads > 0:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    vocabularies, dense, labels, ids = read_dataset(options.data)
    samples, num_dense = dense.shape
    num_tasks = labels.shape[1]
    num_batches = samples // options.batch
    if num_batches == 0:
        sys.exit(f"{options.data} holds {samples} samples, fewer than one batch of {options.batch}")
    expert_units = [int(u) for u in options.expert_units.split(",")]
    tower_units = [int(u) for u in options.tower_units.split(",")]

    batches = []
    fused = options.embeddings == "fused"
    num_slots = len(vocabularies)
    offsets = torch.arange(options.batch * (num_slots if fused else 1), dtype=torch.int64)
    slot_starts = np.cumsum([0] + vocabularies[:-1]).astype(np.int64)
    for b in range(num_batches):
        rows = slice(b * options.batch, (b + 1) * options.batch)
        if fused:
            batch_ids = torch.from_numpy((ids[:, rows].T + slot_starts).reshape(-1).copy())
        else:
            batch_ids = [torch.from_numpy(ids[s, rows].copy()) for s in range(num_slots)]
        batches.append((torch.from_numpy(dense[rows].copy()), batch_ids,
                        torch.from_numpy(labels[rows].copy())))

    model = Mmoe(vocabularies, num_dense, options.embedding_dim, options.experts, expert_units,
                 tower_units, num_tasks, fused)
    # The fused CPU Adam (one kernel over all parameters) is torch's fastest; drgrad's Adam
    # updates every dense parameter per step too.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    parameters = sum(p.numel() for p in model.parameters())

    print(f"# torch_mmoe peer  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}")
    print(f"# machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} "
          f"{platform.release()}")
    print(f"# load average before the run: {load_average()}")
    print(f"# build: Python {platform.python_version()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}"
          f"{' (--threads)' if options.threads > 0 else ' (torch default)'}, "
          f"MKL {torch.backends.mkl.is_available()}, "
          f"oneDNN {torch.backends.mkldnn.is_available()}, "
          f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print(f"# data: {options.data}: {len(vocabularies)} slots ({options.embeddings} "
          f"EmbeddingBag sum, dim "
          f"{options.embedding_dim}), {num_dense} dense, {num_tasks} binary tasks; "
          f"{num_batches} pre-built batches cycled")
    print(f"# model: mmoe, input width {num_dense + options.embedding_dim * len(vocabularies)}, "
          f"experts {options.experts} x [{options.expert_units}], towers [{options.tower_units}] "
          f"+ logit, relu; {parameters} parameters; fused Adam lr 0.001 "
          "(dense embedding gradients)")
    print(f"# method: batch {options.batch}, {options.warmup} warm-up steps, {options.runs} runs x "
          f"{options.steps} steps, perf_counter and process CPU time around the step only")

    step_losses = []
    next_batch = [0]

    def one_step():
        batch_dense, batch_ids, batch_labels = batches[next_batch[0]]
        next_batch[0] = (next_batch[0] + 1) % num_batches
        optimizer.zero_grad(set_to_none=False)
        logits = model(batch_dense, batch_ids, offsets)
        task_losses = functional.binary_cross_entropy_with_logits(
            logits, batch_labels, reduction="none").mean(dim=0)
        loss = task_losses.sum()
        loss.backward()
        optimizer.step()
        step_losses.append(loss.item())

    for _ in range(options.warmup):
        one_step()
    print(f"{'run':<6} {'steps':>10} {'seconds':>12} {'samples/s':>14} {'cpu_seconds':>12} "
          f"{'samples/cpu_s':>16}")
    rates, cpu_rates = [], []
    for run in range(options.runs):
        cpu_start = time.process_time()  # every thread of the process, like drgrad's
        start = time.perf_counter()
        for _ in range(options.steps):
            one_step()
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        rates.append(options.steps * options.batch / seconds)
        cpu_rates.append(options.steps * options.batch / cpu_seconds)
        print(f"{run + 1:<6} {options.steps:>10} {seconds:>12.4f} {rates[-1]:>14.1f} "
              f"{cpu_seconds:>12.4f} {cpu_rates[-1]:>16.1f}")
    median_rate = statistics.median(rates)
    median_cpu_rate = statistics.median(cpu_rates)
    rss = peak_rss_mib()
    window = max(1, len(step_losses) // 10)
    first = sum(step_losses[:window]) / window
    last = sum(step_losses[-window:]) / window
    finite = all(np.isfinite(step_losses))
    passed = bool(finite and last < first)
    print(f"median {'':>10} {'':>12} {median_rate:>14.1f} {'':>12} {median_cpu_rate:>16.1f}")
    print(f"# peak RSS {rss:.1f} MiB (includes the torch runtime)")
    print(f"# check: summed task loss, mean of first {window} steps {first:.4f} -> last {window} "
          f"steps {last:.4f}: {'falls, OK' if passed else 'DOES NOT FALL (training is broken)'}")

    if options.json:
        result = {
            "benchmark": "train_throughput", "implementation": "torch",
            "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
            "machine": {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
                        "kernel": f"{platform.system()} {platform.release()}",
                        "load_average": load_average()},
            "build": {"python": platform.python_version(), "torch": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")},
            "config": {"backbone": "mmoe", "device": "cpu", "batch": options.batch,
                       "embeddings": options.embeddings,
                       "slots": len(vocabularies), "dense": int(num_dense), "tasks": int(num_tasks),
                       "embedding_dim": options.embedding_dim, "experts": options.experts,
                       "expert_units": expert_units, "tower_units": tower_units,
                       "parameters": parameters, "warmup": options.warmup, "runs": options.runs,
                       "steps": options.steps},
            "samples_per_second": rates, "median_samples_per_second": median_rate,
            "samples_per_cpu_second": cpu_rates, "median_samples_per_cpu_second": median_cpu_rate,
            "peak_rss_mib": rss,
            "check": {"first_loss": first, "last_loss": last, "passed": passed},
        }
        with open(options.json, "w") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
