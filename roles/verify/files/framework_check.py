#!/usr/bin/env python3
"""Prove that a deep-learning framework computes correct numbers on every GPU of the machine.

Shipped to the tower by the verify role and run with the framework environment's
Python: standard library besides torch or jax, and Python 3.10 syntax, because a
tower's Python may be older than nomadrig's. Each check is independent of the
framework's own CPU code wherever it can be:

* exact: a 128x128 product of small integer matrices, compared with the product
  computed here in plain Python (small integers are exact in float32, even
  under TF32 tensor cores);
* Freivalds: an NxN random float32 product checked with C @ x == A @ (B @ x),
  which catches a wrong result without an NxN reference; its time gives the
  achieved TFLOP/s;
* bf16: the same operands rounded to bfloat16 and multiplied in bfloat16 (the
  tensor-core path training uses), compared with the float32 product of the
  same rounded operands (see BF16_TOLERANCE);
* cuDNN, on a GPU: a small conv2d on the GPU compared with the CPU's; PyTorch
  also reports the cuDNN version it loaded;
* NCCL, with PyTorch on two or more GPUs: one process per GPU all-reduces a
  tensor of known small integers, whose sum is exact.

On ``--device cuda`` every GPU the framework sees is checked, in nvidia-smi's
order (CUDA_DEVICE_ORDER=PCI_BUS_ID), and seeing fewer GPUs than ``--expect-gpus``
is a failure. A framework that cannot reach the GPU fails: it never falls back to
the CPU when a GPU was asked for.

``--fingerprint`` prints, as JSON, what a passed check depends on besides the
GPUs: when dpkg's database and this environment's site-packages last changed,
the boot, this Python and this script. An apply whose fingerprint equals the
one recorded after the last passed check (``verify_reuse_unchanged``) does not
multiply again: nothing was installed, removed or upgraded and the machine did
not reboot since.

``--list`` prints the frameworks importable here; otherwise one JSON object is
printed on the last line of stdout: framework, version, device, devices (one
entry per device checked), all_reduce, report (one line per device, for people)
and, when something is wrong, problem. The exit status is 0 only when ok.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

FRAMEWORKS = {"pytorch": "torch", "jax": "jax"}
EXACT_N = 128
# Relative error Freivalds' test tolerates: float32 accumulation over N terms, TF32 inputs.
FREIVALDS_TOLERANCE = 1e-2
# bfloat16 keeps 8 significant bits, so rounding to it has a relative error of at most 2**-8.
BF16_UNIT_ROUNDOFF = 2.0**-8
# The reference is the float32 product of the operands already rounded to bfloat16, so their rounding
# cancels out; the product of two bfloat16 numbers is exact in float32 and tensor cores accumulate in
# float32. What remains is rounding each result to bfloat16 (norm-wise about 2**-8 / sqrt(3) = 2.3e-3)
# plus the partial sums cuBLAS may round to bfloat16 when it splits the inner dimension (PyTorch allows
# these reduced-precision reductions by default), each one more rounding of the same size. Eight unit
# roundoffs (3.1e-2) leaves room for several of those; a broken kernel (wrong layout, float16 bits read
# as bfloat16, uninitialised memory) is wrong by a relative error of order 1.
BF16_TOLERANCE = 8 * BF16_UNIT_ROUNDOFF
# A float32 convolution on the GPU against the CPU's: cuDNN may use TF32 (2**-11 input rounding) and
# Winograd or FFT algorithms, so the two differ by about 1e-3 at most; a broken library by order 1.
CONV_TOLERANCE = 1e-2
# The all-reduce's tensor: 2**24 float32 values (64 MiB, enough to time the interconnect), holding
# (i mod ALL_REDUCE_PERIOD) + rank + 1: small integers whose sum over the ranks float32 holds exactly,
# and which differ along the tensor, so a chunk delivered to the wrong place is caught too.
ALL_REDUCE_ELEMENTS = 1 << 24
ALL_REDUCE_PERIOD = 1000
ALL_REDUCE_TIMEOUT_S = 120


def exact_operands(n: int) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Small-integer matrices A and B and their product, computed in plain Python."""
    a = [[(i * k + 1) % 7 - 3 for k in range(n)] for i in range(n)]
    b = [[(k + 2 * j) % 5 - 2 for j in range(n)] for k in range(n)]
    b_columns = list(zip(*b, strict=True))
    product = [[sum(x * y for x, y in zip(row, col, strict=True)) for col in b_columns] for row in a]
    return a, b, product


def cpu_name() -> str:
    """The processor's model name, for the report of a CPU check."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def max_abs_difference(got: list[list[float]], want: list[list[int]]) -> float:
    return max(
        abs(g - w) for got_row, want_row in zip(got, want, strict=True) for g, w in zip(got_row, want_row, strict=True)
    )


def cudnn_version_text(version: int | None) -> str | None:
    """cuDNN's version number as people write it: 8902 is 8.9.2 (major * 1000 + ...), 90100 is 9.1.0.

    cuDNN 9 changed the encoding to major * 10000 + minor * 100 + patch.
    """
    if not version:
        return None
    if version >= 90000:
        return f"{version // 10000}.{version % 10000 // 100}.{version % 100}"
    return f"{version // 1000}.{version % 1000 // 100}.{version % 100}"


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on now, for the all-reduce's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def all_reduce_expected(position: int, world_size: int) -> int:
    """The sum over ranks 0..world_size-1 of what rank r holds at position: (position mod period) + r + 1."""
    return world_size * (position % ALL_REDUCE_PERIOD) + world_size * (world_size + 1) // 2


def bus_bandwidth_gbps(size_bytes: int, seconds: float, world_size: int) -> float:
    """An all-reduce's bus bandwidth in GB/s, as nccl-tests reports it: the data rate times 2(n-1)/n.

    A ring all-reduce moves 2(n-1)/n of the buffer over each link, so this figure is comparable with
    the link's own speed (NVLink, PCIe) whatever the number of GPUs.
    """
    return size_bytes / seconds * 2 * (world_size - 1) / world_size / 1e9


def rate_text(tflops: float) -> str:
    return f"{tflops:.1f} TFLOP/s" if tflops >= 1 else f"{tflops * 1000:.1f} GFLOP/s"


def guarded(label: str, check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One device's checks; an exception becomes that device's problem, so the other devices still report."""
    try:
        return check()
    except Exception as error:  # a CUDA error, an out-of-memory, a missing kernel: all are the device's answer
        return {"device": label, "problem": f"{label}: {type(error).__name__}: {error}"}


# -- PyTorch --------------------------------------------------------------------------------------


def check_pytorch(device: str, big_n: int, expected_gpus: int = 0) -> dict[str, Any]:
    import torch

    result: dict[str, Any] = {
        "framework": "pytorch",
        "version": torch.__version__,
        "device": device,
        "expected_gpus": expected_gpus,
        "devices": [],
    }
    if device == "cuda":
        if not torch.cuda.is_available():
            result["problem"] = (
                f"PyTorch {torch.__version__} cannot use the GPU: torch.cuda.is_available() is False "
                f"(built for CUDA {torch.version.cuda}). Install the PyTorch build that matches the "
                "driver's CUDA version (the frameworks role picks the wheel index from cuda_version)."
            )
            return result
        targets = [torch.device("cuda", index) for index in range(torch.cuda.device_count())]
        available = torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled
        result["cudnn_version"] = cudnn_version_text(torch.backends.cudnn.version()) if available else None
    else:
        targets = [torch.device("cpu")]
    for target in targets:
        result["devices"].append(guarded(str(target), lambda target=target: _pytorch_device(torch, target, big_n)))
    if device == "cuda" and len(targets) >= 2:
        if torch.distributed.is_available() and torch.distributed.is_nccl_available():
            result["all_reduce"] = all_reduce_check(len(targets), "nccl", "cuda")
        else:
            result["all_reduce"] = {
                "backend": "nccl",
                "world_size": len(targets),
                "problem": f"PyTorch {torch.__version__} was built without NCCL, so it cannot all-reduce "
                "across the GPUs; install PyTorch's CUDA build for Linux.",
            }
    elif device == "cuda":
        result["all_reduce"] = {"skipped": "one GPU, nothing to reduce across"}
    return result


def _pytorch_device(torch: Any, dev: Any, big_n: int) -> dict[str, Any]:
    on_gpu = dev.type == "cuda"
    out: dict[str, Any] = {"device": str(dev), "name": torch.cuda.get_device_name(dev) if on_gpu else cpu_name()}

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize(dev)

    def relative_error(got: Any, want: Any) -> float:
        return (torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want)).item()

    a, b, want = exact_operands(EXACT_N)
    got = torch.tensor(a, dtype=torch.float32, device=dev) @ torch.tensor(b, dtype=torch.float32, device=dev)
    out["exact_max_abs_error"] = max_abs_difference(got.cpu().tolist(), want)

    gen = torch.Generator(device="cpu").manual_seed(0)
    big_a = torch.randn(big_n, big_n, generator=gen).to(dev)
    big_b = torch.randn(big_n, big_n, generator=gen).to(dev)
    x = torch.randn(big_n, 1, generator=gen).to(dev)
    seconds, big_c = timed(partial(torch.matmul, big_a, big_b), sync)
    reference = big_a @ (big_b @ x)
    out.update(
        big_n=big_n,
        freivalds_relative_error=relative_error(big_c @ x, reference),
        tflops=2 * big_n**3 / seconds / 1e12,
    )
    del big_c

    half_a, half_b = big_a.to(torch.bfloat16), big_b.to(torch.bfloat16)
    del big_a, big_b
    seconds, half_c = timed(partial(torch.matmul, half_a, half_b), sync)
    out["bf16_relative_error"] = relative_error(half_c.float(), half_a.float() @ half_b.float())
    out["bf16_tflops"] = 2 * big_n**3 / seconds / 1e12
    del half_a, half_b, half_c

    if on_gpu:
        # conv2d on a CUDA tensor goes through cuDNN whenever PyTorch has it (torch.backends.cudnn.enabled).
        gen = torch.Generator(device="cpu").manual_seed(1)
        images = torch.randn(8, 16, 32, 32, generator=gen)
        weights = torch.randn(32, 16, 3, 3, generator=gen)
        on_cpu = torch.nn.functional.conv2d(images, weights, padding=1)
        on_device = torch.nn.functional.conv2d(images.to(dev), weights.to(dev), padding=1).cpu()
        out["conv_relative_error"] = relative_error(on_device, on_cpu)
        torch.cuda.empty_cache()
    return out


def timed(compute: Callable[[], Any], sync: Callable[[], None], repeats: int = 5) -> tuple[float, Any]:
    """Seconds per call of compute (after one warm-up call) and its last result."""
    result = compute()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        result = compute()
    sync()
    return (time.perf_counter() - start) / repeats, result


def all_reduce_check(
    world_size: int,
    backend: str,
    device_type: str,
    elements: int = ALL_REDUCE_ELEMENTS,
    timeout_s: float = ALL_REDUCE_TIMEOUT_S,
) -> dict[str, Any]:
    """All-reduce (sum) a tensor of known values across world_size processes, one per GPU.

    The backend is a parameter so that the same code runs on a CPU with "gloo"; on a tower it is
    "nccl", over NVLink or PCIe peer-to-peer. Processes are spawned (CUDA cannot be used in a forked
    child) and meet at a free loopback port. A hang (a peer-to-peer path that never delivers) ends
    after timeout_s as a problem, not as a run that never finishes.
    """
    import torch.multiprocessing as mp

    result: dict[str, Any] = {"backend": backend, "world_size": world_size, "elements": elements}
    queue = mp.get_context("spawn").SimpleQueue()
    init_method = f"tcp://127.0.0.1:{free_port()}"
    args = (world_size, backend, init_method, device_type, elements, timeout_s, queue)
    context = mp.spawn(_all_reduce_worker, args=args, nprocs=world_size, join=False)
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                for process in context.processes:
                    if process.is_alive():
                        process.terminate()
                        process.join(10)
                result["problem"] = (
                    f"the {backend} all-reduce across {world_size} devices did not finish in {timeout_s:.0f} s. "
                    "A peer-to-peer path between the GPUs that never delivers is the usual cause: PCIe ACS or the "
                    "IOMMU between them (disable ACS or set iommu=pt), or a broken NVLink bridge; "
                    "`nvidia-smi topo -m` shows the paths, and NCCL_P2P_DISABLE=1 tells whether peer-to-peer is it."
                )
                return result
    except Exception as error:  # a worker raised or died: its traceback's last line says what happened
        last = [line for line in str(error).strip().splitlines() if line.strip()][-1:] or [type(error).__name__]
        result["problem"] = f"the {backend} all-reduce across {world_size} devices failed: {last[0].strip()[:500]}"
        return result
    reports = [queue.get() for _ in range(world_size)]
    result["max_abs_error"] = max(report["max_abs_error"] for report in reports)
    seconds = max(report["seconds"] for report in reports)
    result["bus_gbps"] = bus_bandwidth_gbps(elements * 4, seconds, world_size)
    return result


def _all_reduce_worker(
    rank: int,
    world_size: int,
    backend: str,
    init_method: str,
    device_type: str,
    elements: int,
    timeout_s: float,
    queue: Any,
) -> None:
    import datetime

    import torch
    import torch.distributed as dist

    if device_type == "cuda":
        torch.cuda.set_device(rank)
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    dist.init_process_group(
        backend,
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    try:
        positions = torch.arange(elements, device=device, dtype=torch.int64) % ALL_REDUCE_PERIOD
        tensor = (positions + rank + 1).to(torch.float32)
        dist.all_reduce(tensor)
        expected = (world_size * positions + world_size * (world_size + 1) // 2).to(torch.float32)
        error = (tensor - expected).abs().max().item()

        def sync() -> None:
            if device_type == "cuda":
                torch.cuda.synchronize(device)

        dist.barrier()
        seconds, _ = timed(lambda: dist.all_reduce(tensor), sync)
        queue.put({"rank": rank, "max_abs_error": error, "seconds": seconds})
    finally:
        dist.destroy_process_group()


# -- JAX --------------------------------------------------------------------------------------------


def check_jax(device: str, big_n: int, expected_gpus: int = 0) -> dict[str, Any]:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    result: dict[str, Any] = {
        "framework": "jax",
        "version": jax.__version__,
        "device": device,
        "expected_gpus": expected_gpus,
        "devices": [],
    }
    if device == "cuda":
        try:
            targets = jax.devices("gpu")
        except RuntimeError as error:
            result["problem"] = (
                f"JAX {jax.__version__} cannot use the GPU ({error}). Install jax with the CUDA plugin "
                "that matches the driver (e.g. jax[cuda12])."
            )
            return result
        if len(targets) >= 2:
            result["all_reduce"] = {"skipped": "JAX's collectives are not checked; PyTorch's NCCL check covers them"}
    else:
        targets = jax.devices("cpu")[:1]
    for target in targets:
        label = f"cuda:{target.id}" if device == "cuda" else "cpu"
        result["devices"].append(guarded(label, lambda target=target, label=label: _jax_device(target, label, big_n)))
    return result


def _jax_device(target: Any, label: str, big_n: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    on_gpu = label != "cpu"
    out: dict[str, Any] = {
        "device": label,
        "name": getattr(target, "device_kind", str(target)) if on_gpu else cpu_name(),
    }

    def relative_error(got: Any, want: Any) -> float:
        got, want = got.astype(jnp.float32), want.astype(jnp.float32)
        return float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))

    def sync() -> None:  # results are awaited where they are read; dispatch is asynchronous
        pass

    exact = jax.jit(lambda p, q: jnp.matmul(p, q, precision=jax.lax.Precision.HIGHEST))
    a, b, want = exact_operands(EXACT_N)
    got = exact(
        jax.device_put(jnp.array(a, dtype=jnp.float32), target), jax.device_put(jnp.array(b, dtype=jnp.float32), target)
    )
    out["exact_max_abs_error"] = max_abs_difference(got.tolist(), want)

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    big_a = jax.device_put(jax.random.normal(keys[0], (big_n, big_n), dtype=jnp.float32), target)
    big_b = jax.device_put(jax.random.normal(keys[1], (big_n, big_n), dtype=jnp.float32), target)
    x = jax.device_put(jax.random.normal(keys[2], (big_n, 1), dtype=jnp.float32), target)
    seconds, big_c = timed(lambda: exact(big_a, big_b).block_until_ready(), sync)
    reference = exact(big_a, exact(big_b, x))
    out.update(
        big_n=big_n,
        freivalds_relative_error=relative_error(exact(big_c, x), reference),
        tflops=2 * big_n**3 / seconds / 1e12,
    )

    # Default precision: bfloat16 operands go to the tensor cores; the product comes back in bfloat16.
    half = jax.jit(jnp.matmul)
    half_a, half_b = big_a.astype(jnp.bfloat16), big_b.astype(jnp.bfloat16)
    seconds, half_c = timed(lambda: half(half_a, half_b).block_until_ready(), sync)
    out["bf16_relative_error"] = relative_error(half_c, exact(half_a.astype(jnp.float32), half_b.astype(jnp.float32)))
    out["bf16_tflops"] = 2 * big_n**3 / seconds / 1e12

    if on_gpu:
        # XLA lowers a convolution on an NVIDIA GPU to cuDNN.
        conv = jax.jit(lambda p, q: jax.lax.conv_general_dilated(p, q, window_strides=(1, 1), padding="SAME"))
        conv_keys = jax.random.split(jax.random.PRNGKey(1), 2)
        cpu = jax.devices("cpu")[0]
        images = jax.random.normal(conv_keys[0], (8, 16, 32, 32), dtype=jnp.float32)
        weights = jax.random.normal(conv_keys[1], (32, 16, 3, 3), dtype=jnp.float32)
        on_cpu = conv(jax.device_put(images, cpu), jax.device_put(weights, cpu))
        on_device = conv(jax.device_put(images, target), jax.device_put(weights, target))
        out["conv_relative_error"] = relative_error(jax.device_put(on_device, cpu), on_cpu)
    return out


# -- judging and reporting -------------------------------------------------------------------------


def device_problems(framework: str, entry: dict[str, Any]) -> list[str]:
    """What is wrong with one device's numbers, in words (empty when they are right)."""
    if "problem" in entry:
        return [f"{framework} on {entry['problem']}"]
    where = f"{framework} on {entry['device']}"
    problems = []
    if entry["exact_max_abs_error"] != 0:
        problems.append(
            f"{where} got a {EXACT_N}x{EXACT_N} integer matrix product wrong (largest error "
            f"{entry['exact_max_abs_error']}); the device or its libraries compute wrong numbers."
        )
    if not entry["freivalds_relative_error"] < FREIVALDS_TOLERANCE:
        problems.append(
            f"{where}: a {entry['big_n']}x{entry['big_n']} float32 product fails Freivalds' test "
            f"(relative error {entry['freivalds_relative_error']:.3g}, tolerance {FREIVALDS_TOLERANCE})."
        )
    if "bf16_relative_error" in entry and not entry["bf16_relative_error"] < BF16_TOLERANCE:
        problems.append(
            f"{where}: a {entry['big_n']}x{entry['big_n']} bfloat16 product differs from the float32 product of "
            f"the same operands by {entry['bf16_relative_error']:.3g} (tolerance {BF16_TOLERANCE:.3g}); the "
            "bfloat16 (tensor-core) path computes wrong numbers."
        )
    if "conv_relative_error" in entry and not entry["conv_relative_error"] < CONV_TOLERANCE:
        problems.append(
            f"{where}: a conv2d through cuDNN differs from the CPU's by {entry['conv_relative_error']:.3g} "
            f"(tolerance {CONV_TOLERANCE}); reinstall the framework's CUDA build (it brings its cuDNN)."
        )
    return problems


def all_reduce_problems(framework: str, all_reduce: dict[str, Any] | None) -> list[str]:
    if not all_reduce or "skipped" in all_reduce:
        return []
    if "problem" in all_reduce:
        return [f"{framework}: {all_reduce['problem']}"]
    if all_reduce["max_abs_error"] != 0:
        return [
            f"{framework}: the {all_reduce['backend']} all-reduce across {all_reduce['world_size']} devices returned "
            f"wrong sums (largest error {all_reduce['max_abs_error']:g}; the values are small integers, so any "
            "error is a corrupted transfer). Suspect the interconnect: run again with NCCL_P2P_DISABLE=1 to "
            "tell peer-to-peer from the rest, and check `nvidia-smi topo -m` and `nvidia-smi nvlink -s`."
        ]
    return []


def judge(result: dict[str, Any]) -> dict[str, Any]:
    """Add ok, the report lines and, when anything is wrong, the problem in words."""
    framework = result["framework"]
    problems = [result["problem"]] if "problem" in result else []
    devices = result.get("devices", [])
    if "problem" not in result and result["device"] == "cuda":
        expected = result.get("expected_gpus", 0)
        if expected and len(devices) < expected:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            problems.append(
                f"{framework} sees {len(devices)} GPU(s) but nvidia-smi lists {expected}"
                + (
                    f" (CUDA_VISIBLE_DEVICES={visible} hides the others; unset it)."
                    if visible is not None
                    else "; a GPU the driver lists but CUDA cannot open is usually in an error state "
                    "(`nvidia-smi -q` shows it; a reboot clears most) or held exclusively by another process."
                )
            )
        elif not devices:
            problems.append(f"{framework} found no GPU to run on.")
        if framework == "pytorch" and result.get("cudnn_version") is None:
            problems.append(
                "PyTorch cannot use cuDNN (torch.backends.cudnn.is_available() is False or cuDNN is disabled): "
                "convolutions fall back to slow kernels. Reinstall PyTorch's CUDA build, which brings its cuDNN."
            )
    for entry in devices:
        problems.extend(device_problems(framework, entry))
    problems.extend(all_reduce_problems(framework, result.get("all_reduce")))
    if problems:
        result["problem"] = " ".join(problems)
    result["ok"] = not problems
    result["report"] = report_lines(result)
    return result


def report_lines(result: dict[str, Any]) -> list[str]:
    """One line per device, then one for cuDNN and the all-reduce: what was checked and how fast."""
    head = f"{result['framework']} {result.get('version', '?')}"
    lines = []
    for entry in result.get("devices", []):
        if "problem" in entry:
            lines.append(f"{head} on {entry['device']}: FAILED: {entry['problem']}")
            continue
        parts = [
            f"{EXACT_N}x{EXACT_N} integer product "
            + ("exact" if entry["exact_max_abs_error"] == 0 else f"WRONG by {entry['exact_max_abs_error']}"),
            f"{entry['big_n']}x{entry['big_n']} float32 Freivalds error {entry['freivalds_relative_error']:.1e} "
            f"at {rate_text(entry['tflops'])}",
        ]
        if "bf16_relative_error" in entry:
            parts.append(f"bf16 error {entry['bf16_relative_error']:.1e} at {rate_text(entry['bf16_tflops'])}")
        if "conv_relative_error" in entry:
            parts.append(f"cuDNN conv2d vs CPU error {entry['conv_relative_error']:.1e}")
        lines.append(f"{head} on {entry['device']} ({entry.get('name', '?')}): {'; '.join(parts)}")
    if result.get("cudnn_version"):
        lines.append(f"{head}: cuDNN {result['cudnn_version']}")
    all_reduce = result.get("all_reduce")
    if all_reduce and "skipped" in all_reduce:
        lines.append(f"{head}: all-reduce not checked: {all_reduce['skipped']}")
    elif all_reduce and "problem" not in all_reduce:
        lines.append(
            f"{head}: {all_reduce['backend']} all-reduce across {all_reduce['world_size']} devices "
            + ("exact" if all_reduce["max_abs_error"] == 0 else f"WRONG by {all_reduce['max_abs_error']:g}")
            + f" at {all_reduce['bus_gbps']:.1f} GB/s bus bandwidth"
        )
    if not result.get("ok", True) and not lines:
        lines.append(f"{head} on {result.get('device', '?')}: FAILED: {result.get('problem', 'no result')}")
    return lines


#: What changes when a package, the kernel or the driver is installed, removed or upgraded.
DPKG_STATUS = "/var/lib/dpkg/status"
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def fingerprint() -> dict[str, Any]:
    """What a passed check depends on besides the GPUs (which the role reads with nvidia-smi every run).

    Modification times, not contents: pip and dpkg rewrite these whenever they
    install, remove or upgrade anything, and reading them costs nothing.
    """
    import sysconfig  # only here: the checks themselves do not need it

    paths = {DPKG_STATUS, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    changed = {path: os.stat(path).st_mtime_ns for path in sorted(paths) if os.path.exists(path)}
    with open(__file__, "rb") as script:
        checks = hashlib.sha256(script.read()).hexdigest()
    boot = ""
    if os.path.exists(BOOT_ID):
        with open(BOOT_ID, encoding="utf-8") as handle:
            boot = handle.read().strip()
    return {"changed": changed, "boot_id": boot, "python": sys.version, "checks": checks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the importable frameworks as JSON")
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cpu")
    parser.add_argument("--size", type=int, default=0, help="N of the timed NxN products (default by device)")
    parser.add_argument("--expect-gpus", type=int, default=0, help="GPUs nvidia-smi lists (0: do not compare)")
    parser.add_argument("--fingerprint", action="store_true", help="print what a passed check depends on, as JSON")
    args = parser.parse_args()

    if args.fingerprint:
        print(json.dumps(fingerprint(), sort_keys=True))
        return 0
    if args.list:
        found = [name for name, module in FRAMEWORKS.items() if importlib.util.find_spec(module)]
        print(json.dumps(found))
        return 0
    if args.framework is None:
        parser.error("--framework is required unless --list is given")
    # CUDA numbers GPUs fastest first unless told otherwise; nvidia-smi numbers them by PCI address.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    big_n = args.size or (8192 if args.device == "cuda" else 1024)
    check = check_pytorch if args.framework == "pytorch" else check_jax
    try:
        result = judge(check(args.device, big_n, args.expect_gpus))
    except Exception as error:  # report any framework failure as a result, not a traceback
        result = judge(
            {
                "framework": args.framework,
                "device": args.device,
                "problem": f"{args.framework} failed on {args.device}: {type(error).__name__}: {error}",
            }
        )
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
