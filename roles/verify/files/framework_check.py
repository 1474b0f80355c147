#!/usr/bin/env python3
"""Prove that a deep-learning framework computes correct matrix products on a device.

Shipped to the tower by the verify role and run with the framework environment's
Python. Two checks, both independent of the framework's own CPU code:

* an exact one: a 128x128 product of small integer matrices, compared with the
  product computed here in plain Python (small integers are exact in float32,
  even under TF32 tensor cores);
* a large one: an NxN random product checked with Freivalds' test,
  C @ x == A @ (B @ x), which catches a wrong result without an NxN reference;
  its time gives the achieved TFLOP/s.

``--list`` prints the frameworks importable here; otherwise one JSON object is
printed on the last line of stdout, and the exit status is 0 only when the
numbers are right on the requested device.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

FRAMEWORKS = {"pytorch": "torch", "jax": "jax"}
EXACT_N = 128
# Relative error Freivalds' test tolerates: float32 accumulation over N terms, TF32 inputs.
FREIVALDS_TOLERANCE = 1e-2


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


def check_pytorch(device: str, big_n: int) -> dict:
    import torch

    result = {"framework": "pytorch", "version": torch.__version__, "device": device}
    if device == "cuda":
        if not torch.cuda.is_available():
            result["problem"] = (
                f"PyTorch {torch.__version__} cannot use the GPU: torch.cuda.is_available() is False "
                f"(built for CUDA {torch.version.cuda}). Install the PyTorch build that matches the "
                "driver's CUDA version (the frameworks role picks the wheel index from cuda_version)."
            )
            return result
        result["device_name"] = torch.cuda.get_device_name(0)
    else:
        result["device_name"] = cpu_name()
    dev = torch.device(device)

    a, b, want = exact_operands(EXACT_N)
    got = torch.tensor(a, dtype=torch.float32, device=dev) @ torch.tensor(b, dtype=torch.float32, device=dev)
    result["exact_max_abs_error"] = max_abs_difference(got.cpu().tolist(), want)

    gen = torch.Generator(device="cpu").manual_seed(0)
    big_a = torch.randn(big_n, big_n, generator=gen).to(dev)
    big_b = torch.randn(big_n, big_n, generator=gen).to(dev)
    x = torch.randn(big_n, 1, generator=gen).to(dev)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    big_c = big_a @ big_b  # warm-up, and the product Freivalds' test checks
    sync()
    start = time.perf_counter()
    repeats = 5
    for _ in range(repeats):
        big_c = big_a @ big_b
    sync()
    seconds = (time.perf_counter() - start) / repeats
    reference = big_a @ (big_b @ x)
    error = (torch.linalg.vector_norm(big_c @ x - reference) / torch.linalg.vector_norm(reference)).item()
    result.update(big_n=big_n, freivalds_relative_error=error, tflops=2 * big_n**3 / seconds / 1e12)
    return result


def check_jax(device: str, big_n: int) -> dict:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax
    import jax.numpy as jnp

    result = {"framework": "jax", "version": jax.__version__, "device": device}
    platform = "gpu" if device == "cuda" else "cpu"
    try:
        target = jax.devices(platform)[0]
    except RuntimeError as error:
        result["problem"] = (
            f"JAX {jax.__version__} cannot use the GPU ({error}). Install jax with the CUDA plugin "
            "that matches the driver (e.g. jax[cuda12])."
        )
        return result
    result["device_name"] = getattr(target, "device_kind", str(target)) if device == "cuda" else cpu_name()

    a, b, want = exact_operands(EXACT_N)
    matmul = jax.jit(lambda p, q: jnp.matmul(p, q, precision=jax.lax.Precision.HIGHEST))
    got = matmul(
        jax.device_put(jnp.array(a, dtype=jnp.float32), target), jax.device_put(jnp.array(b, dtype=jnp.float32), target)
    )
    result["exact_max_abs_error"] = max_abs_difference(got.tolist(), want)

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    big_a = jax.device_put(jax.random.normal(keys[0], (big_n, big_n), dtype=jnp.float32), target)
    big_b = jax.device_put(jax.random.normal(keys[1], (big_n, big_n), dtype=jnp.float32), target)
    x = jax.device_put(jax.random.normal(keys[2], (big_n, 1), dtype=jnp.float32), target)
    big_c = matmul(big_a, big_b).block_until_ready()  # warm-up (compiles), and the checked product
    start = time.perf_counter()
    repeats = 5
    for _ in range(repeats):
        big_c = matmul(big_a, big_b)
    big_c.block_until_ready()
    seconds = (time.perf_counter() - start) / repeats
    reference = matmul(big_a, matmul(big_b, x))
    error = float(jnp.linalg.norm(matmul(big_c, x) - reference) / jnp.linalg.norm(reference))
    result.update(big_n=big_n, freivalds_relative_error=error, tflops=2 * big_n**3 / seconds / 1e12)
    return result


def judge(result: dict) -> dict:
    """Add ok and, when a number is wrong, the problem in words."""
    if "problem" not in result:
        if result["exact_max_abs_error"] != 0:
            result["problem"] = (
                f"{result['framework']} on {result['device']} got a {EXACT_N}x{EXACT_N} integer matrix "
                f"product wrong (largest error {result['exact_max_abs_error']}); the device or its "
                "libraries compute wrong numbers."
            )
        elif not result["freivalds_relative_error"] < FREIVALDS_TOLERANCE:
            result["problem"] = (
                f"{result['framework']} on {result['device']}: a {result['big_n']}x{result['big_n']} "
                f"product fails Freivalds' test (relative error {result['freivalds_relative_error']:.3g}, "
                f"tolerance {FREIVALDS_TOLERANCE})."
            )
    result["ok"] = "problem" not in result
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the importable frameworks as JSON")
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cpu")
    parser.add_argument("--size", type=int, default=0, help="N of the timed NxN product (default by device)")
    args = parser.parse_args()

    if args.list:
        found = [name for name, module in FRAMEWORKS.items() if importlib.util.find_spec(module)]
        print(json.dumps(found))
        return 0
    if args.framework is None:
        parser.error("--framework is required unless --list is given")
    big_n = args.size or (8192 if args.device == "cuda" else 1024)
    check = check_pytorch if args.framework == "pytorch" else check_jax
    try:
        result = judge(check(args.device, big_n))
    except Exception as error:  # report any framework failure as a result, not a traceback
        result = {
            "framework": args.framework,
            "device": args.device,
            "ok": False,
            "problem": f"{args.framework} failed on {args.device}: {type(error).__name__}: {error}",
        }
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
