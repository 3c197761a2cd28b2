#!/usr/bin/env python3
# PyTorch peer of bench/gpu_train_bench.cc: the same Census-shaped MMoE, Split-MMoE and DRGrad
# models and the industrial-shaped model, on the same data (the files gpu_train_bench
# --write-data writes), timed the same way (warm-up, runs of steps between device
# synchronisations, median samples/s), eager and under torch.compile.
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as functional
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mmoe import read_dataset, xavier_uniform_  # noqa: E402  (the DRGBENCH1 reader)

# The models of gpu_train_bench (its model_case): shape, embedding dim, experts, expert layers,
# tower layers; "split": task 0 has towers T' (own gate) and T'' (shared gate, v_s) mixed by
# (mu', mu''), and the other tasks' towers read v_s; "drgrad": the router and updater too.
MODELS = {
    "census_mmoe": dict(shape="census", dim=4, experts=8, expert_units=[64], tower_units=[32],
                        split=False, drgrad=False),
    "census_split_mmoe": dict(shape="census", dim=4, experts=8, expert_units=[64],
                              tower_units=[32], split=True, drgrad=False),
    "census_drgrad": dict(shape="census", dim=4, experts=8, expert_units=[64], tower_units=[32],
                          split=True, drgrad=True),
    "industrial_mmoe": dict(shape="industrial", dim=16, experts=8, expert_units=[512, 256],
                            tower_units=[128], split=False, drgrad=False),
    "industrial_drgrad": dict(shape="industrial", dim=16, experts=8, expert_units=[512, 256],
                              tower_units=[128], split=True, drgrad=True),
}


def tower(in_features, units):
    layers = []
    for width in units:
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    layers.append(nn.Linear(in_features, 1))
    return nn.Sequential(*layers)


class MultiTaskMmoe(nn.Module):
    """drgrad's MMoE: [dense, embeddings] -> experts as batched products ([experts, batch, width])
    with ReLU -> a softmax gate per task (plus the shared gate v_s when split) -> towers."""

    def __init__(self, vocabularies, num_dense, dim, experts, expert_units, tower_units,
                 num_tasks, split):
        super().__init__()
        self.split = split
        self.num_slots = len(vocabularies)
        # All slots in one table (ids offset per slot): one lookup instead of one per slot, the
        # usual way to cut PyTorch's per-module overhead; one id per sample and slot, so it is
        # the same sum pooling as drgrad's EmbeddingBag.
        self.embedding = nn.Embedding(sum(vocabularies), dim)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        starts = torch.tensor([0] + list(vocabularies[:-1]), dtype=torch.int64).cumsum(0)
        self.register_buffer("slot_starts", starts, persistent=False)
        width = num_dense + dim * len(vocabularies)
        self.expert_weights = nn.ParameterList()
        self.expert_biases = nn.ParameterList()
        in_features = width
        for units in expert_units:
            weight = nn.Parameter(torch.empty(experts, in_features, units))
            xavier_uniform_(weight, in_features, units)
            self.expert_weights.append(weight)
            self.expert_biases.append(nn.Parameter(torch.zeros(experts, 1, units)))
            in_features = units
        num_gates = num_tasks + (1 if split else 0)  # the last one is the shared gate
        self.gates = nn.ModuleList(nn.Linear(width, experts) for _ in range(num_gates))
        self.towers = nn.ModuleList(tower(in_features, tower_units) for _ in range(num_tasks))
        self.shared_tower = tower(in_features, tower_units) if split else None  # T''
        for module in self.modules():
            if isinstance(module, nn.Linear):
                xavier_uniform_(module.weight, module.in_features, module.out_features)
                nn.init.zeros_(module.bias)
        # (mu', mu''), set by the DRGrad updater; 0.5 each at the start, as in drgrad.
        self.register_buffer("mixing", torch.tensor([0.5, 0.5]), persistent=False)

    def forward(self, dense, ids):  # ids: [batch, slots]
        pooled = self.embedding(ids + self.slot_starts).flatten(1)
        x = torch.cat([dense, pooled], dim=1)
        hidden = x.unsqueeze(0).expand(self.expert_weights[0].shape[0], -1, -1)
        for weight, bias in zip(self.expert_weights, self.expert_biases):
            hidden = torch.relu(torch.baddbmm(bias, hidden, weight))
        mixed = [torch.einsum("be,ebd->bd", torch.softmax(gate(x), dim=1), hidden)
                 for gate in self.gates]
        if not self.split:
            return torch.cat([t(m) for t, m in zip(self.towers, mixed)], dim=1)
        shared = mixed[-1]  # v_s
        primary = (self.mixing[0] * self.towers[0](mixed[0]) +
                   self.mixing[1] * self.shared_tower(shared))
        return torch.cat([primary] + [t(shared) for t in self.towers[1:]], dim=1)


def task_loss(model, dense, ids, labels):
    logits = model(dense, ids)
    return functional.binary_cross_entropy_with_logits(
        logits, labels, reduction="none").mean(dim=0).sum()


def _sum_dots(first, second):
    return torch.stack([torch.dot(a.reshape(-1), b.reshape(-1))
                        for a, b in zip(first, second)]).sum()


def drgrad_route(own, shared, aux, sigma, mixing):
    """DRGrad's router (paper form, all tower parameters, gamma 1; engine/multitask/
    drgrad_router.cc) on the gradient lists of T', T'' and each auxiliary tower, in place and on
    the device (no host round trip), then the updater (rho 1): sigma += final tower norms,
    mixing = softmax(sigma)."""
    own_norm2 = _sum_dots(own, own)
    shared_norm2 = _sum_dots(shared, shared)
    zero = torch.zeros((), device=own_norm2.device)

    def cosine(dot, norm2_a, norm2_b):
        denominator = norm2_a.sqrt() * norm2_b.sqrt()
        return torch.where(denominator > 0, (dot / denominator).clamp(-1, 1), zero)

    def stake(norm2_a, norm2_b):
        ratio = torch.where(norm2_b > 0, norm2_a / norm2_b, zero).sqrt().clamp(max=1)
        return torch.where((norm2_a > 0) & (norm2_b > 0), ratio, zero)

    xi2 = cosine(_sum_dots(own, shared), own_norm2, shared_norm2)
    lambda2 = stake(own_norm2, shared_norm2)
    count = len(aux)
    own_from_shared, shared_from_shared, own_from_aux = zero, zero, []
    for tower_gradients in aux:
        aux_norm2 = _sum_dots(tower_gradients, tower_gradients)
        xi1 = cosine(_sum_dots(own, tower_gradients), own_norm2, aux_norm2)
        lambda1 = stake(own_norm2, aux_norm2)
        boost = 1 - (xi1 < 0).float() * xi1
        own_from_shared = own_from_shared + boost * lambda1 / count
        own_from_aux.append((xi2 >= 0).float() * lambda2)
        shared_from_shared = shared_from_shared - (xi1 * xi2 < 0).float() * xi1 * xi2 / count
    for i, g_own in enumerate(own):
        g_own.add_(shared[i] * own_from_shared)
        for a, tower_gradients in enumerate(aux):
            g_own.add_(tower_gradients[i] * own_from_aux[a])
        shared[i].mul_(1 + shared_from_shared)
    norms = torch.stack([_sum_dots(own, own).sqrt(), _sum_dots(shared, shared).sqrt()])
    sigma.add_(norms)
    mixing.copy_(torch.softmax(sigma, dim=0))


def device_description(device):
    if device.type != "cuda":
        return {"name": "none"}
    properties = torch.cuda.get_device_properties(device)
    return {"name": properties.name,
            "compute_capability": f"{properties.major}.{properties.minor}",
            "multiprocessors": properties.multi_processor_count,
            "memory_bytes": properties.total_memory,
            "runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def run_model(name, mode, options, datasets, device, write_json):
    spec = MODELS[name]
    vocabularies, dense, labels, ids = datasets[spec["shape"]]
    batch = options.census_batch if spec["shape"] == "census" else options.industrial_batch
    samples = dense.shape[0]
    num_batches = samples // batch
    if num_batches == 0:
        sys.exit(f"{spec['shape']} data holds {samples} samples, fewer than one batch of {batch}")
    num_tasks = labels.shape[1]
    torch.manual_seed(options.seed)
    model = MultiTaskMmoe(vocabularies, dense.shape[1], spec["dim"], spec["experts"],
                          spec["expert_units"], spec["tower_units"], num_tasks,
                          spec["split"]).to(device)
    # Batches on the device before the clock starts (drgrad's step copies host batches in, so
    # this favours the peer).
    batches = []
    for b in range(num_batches):
        rows = slice(b * batch, (b + 1) * batch)
        batches.append((torch.from_numpy(dense[rows].copy()).to(device),
                        torch.from_numpy(ids[:, rows].T.copy()).to(device),
                        torch.from_numpy(labels[rows].copy()).to(device)))
    # Fused Adam (one kernel over all parameters) is torch's fastest; dense embedding gradients.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    parameters = sum(p.numel() for p in model.parameters())

    loss_function = task_loss
    route = drgrad_route
    if mode == "compile":
        loss_function = torch.compile(task_loss, mode=options.compile_mode)
        route = torch.compile(drgrad_route, mode=options.compile_mode)
    sigma = torch.zeros(2, device=device)
    if spec["drgrad"]:
        own_params = list(model.towers[0].parameters())
        shared_params = list(model.shared_tower.parameters())
        aux_params = [list(t.parameters()) for t in model.towers[1:]]

    step_losses = []
    next_batch = [0]

    def one_step():
        batch_dense, batch_ids, batch_labels = batches[next_batch[0]]
        next_batch[0] = (next_batch[0] + 1) % num_batches
        optimizer.zero_grad(set_to_none=False)
        loss = loss_function(model, batch_dense, batch_ids, batch_labels)
        loss.backward()
        if spec["drgrad"]:
            route([p.grad for p in own_params], [p.grad for p in shared_params],
                  [[p.grad for p in params] for params in aux_params], sigma, model.mixing)
        optimizer.step()
        step_losses.append(loss.detach())  # kept on the device: no host sync per step

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    compile_start = time.perf_counter()
    for _ in range(options.warmup):
        one_step()
    synchronize()
    warmup_seconds = time.perf_counter() - compile_start
    rates = []
    for run in range(options.runs):
        synchronize()
        start = time.perf_counter()
        for _ in range(options.steps):
            one_step()
        synchronize()
        seconds = time.perf_counter() - start
        rates.append(options.steps * batch / seconds)
        print(f"{name + ' ' + mode:<28} {run + 1:>4} {options.steps:>8} {seconds:>10.4f} "
              f"{rates[-1]:>14.1f} {1e3 * seconds / options.steps:>10.3f}")
    median_rate = statistics.median(rates)
    losses = torch.stack(step_losses).cpu().tolist()
    window = max(1, len(losses) // 10)
    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    passed = all(map(lambda v: v == v and abs(v) != float("inf"), losses)) and last < first
    print(f"{name + ' ' + mode:<28} {'med':>4} {'':>8} {'':>10} {median_rate:>14.1f} "
          f"{1e3 * batch / median_rate:>10.3f}")
    print(f"# {name} {mode}: {parameters} parameters, batch {batch}, warm-up {warmup_seconds:.1f}s"
          f"{' (includes compilation)' if mode == 'compile' else ''}; summed task loss, mean of "
          f"first {window} steps {first:.4f} -> last {window} {last:.4f}: "
          f"{'falls, OK' if passed else 'DOES NOT FALL (training is broken)'}")
    write_json({
        "benchmark": "gpu_train", "implementation": "torch", "mode": mode, "model": name,
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
        "device": str(device), "gpu": device_description(device),
        "config": {"shape": spec["shape"], "batch": batch, "slots": len(vocabularies),
                   "dense": int(dense.shape[1]), "tasks": int(num_tasks),
                   "embedding_dim": spec["dim"], "experts": spec["experts"],
                   "expert_units": spec["expert_units"], "tower_units": spec["tower_units"],
                   "split": spec["split"], "drgrad": spec["drgrad"], "parameters": parameters,
                   "warmup": options.warmup, "runs": options.runs, "steps": options.steps,
                   "compile_mode": options.compile_mode if mode == "compile" else None},
        "samples_per_second": rates, "median_samples_per_second": median_rate,
        "warmup_seconds": warmup_seconds,
        "check": {"first_loss": first, "last_loss": last, "passed": passed},
    })
    return passed


def main():
    parser = argparse.ArgumentParser(description=__doc__ or "PyTorch peer of gpu_train_bench")
    parser.add_argument("--data-dir", required=True,
                        help="folder with census.bin / industrial.bin from gpu_train_bench "
                             "--write-data")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--modes", default="eager,compile")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode (default, reduce-overhead, max-autotune, ...)")
    parser.add_argument("--census-batch", type=int, default=512)
    parser.add_argument("--industrial-batch", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="append one JSON line per model and mode")
    options = parser.parse_args()

    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("SKIPPED: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    models = [m for m in options.models.split(",") if m]
    modes = [m for m in options.modes.split(",") if m]
    for name in models:
        if name not in MODELS:
            sys.exit(f"unknown model {name}; known: {', '.join(MODELS)}")
    for mode in modes:
        if mode not in ("eager", "compile"):
            sys.exit(f"unknown mode {mode}; use eager and/or compile")
    datasets = {}
    for shape in sorted({MODELS[m]["shape"] for m in models}):
        datasets[shape] = read_dataset(os.path.join(options.data_dir, f"{shape}.bin"))

    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"# torch_mtl_gpu peer  {now:%Y-%m-%dT%H:%M:%SZ}")
    print(f"# build: Python {platform.python_version()}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, device {device} {device_description(device)}")
    print(f"# method: {options.warmup} warm-up steps (compilation included), then {options.runs} "
          f"runs x {options.steps} steps between device synchronisations, median; batches on the "
          "device beforehand; losses kept on the device; fused Adam lr 1e-3; fp32 (no tf32: "
          f"allow_tf32 matmul {torch.backends.cuda.matmul.allow_tf32})")
    print(f"{'model mode':<28} {'run':>4} {'steps':>8} {'seconds':>10} {'samples/s':>14} "
          f"{'ms/step':>10}")

    def write_json(record):
        if options.json:
            with open(options.json, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    all_passed = True
    for name in models:
        for mode in modes:
            all_passed = run_model(name, mode, options, datasets, device, write_json) and all_passed
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
