"""Benchmark: how long the reaper's scan takes, and how many API calls it makes, at 1,000 and 10,000 instances.

Runs against a moto server on loopback (no AWS account): the times measure the
reaper plus moto, not AWS latency; the call counts are what AWS would see.
Seeding (run_instances in batches) is timed separately from the scan.

Usage:  python benchmarks/reaper_scan.py [--sizes 1000 10000] [--runs 3] [--out benchmarks/results/reaper_scan.txt]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
TEAM = "bench-lab"
BATCH = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed(total: int) -> float:
    """Launch `total` managed instances spread over the three regions (every 10th stopped); returns seconds."""
    import boto3

    start = time.perf_counter()
    for region, count in zip(REGIONS, per_region(total), strict=True):
        ec2 = boto3.client("ec2", region_name=region)
        image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
        launched = 0
        while launched < count:
            n = min(BATCH, count - launched)
            tags = [
                {"Key": "nomadrig:managed", "Value": "true"},
                {"Key": "nomadrig:team", "Value": TEAM},
                {"Key": "nomadrig:owner", "Value": f"nomad-{launched}"},
                {"Key": "nomadrig:ttl", "Value": "168"},
            ]
            ids = [
                i["InstanceId"]
                for i in ec2.run_instances(
                    ImageId=image, MinCount=n, MaxCount=n, InstanceType="g5.xlarge",
                    BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 50}}],
                    TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
                )["Instances"]
            ]
            ec2.stop_instances(InstanceIds=ids[::10])
            launched += n
    return time.perf_counter() - start


class EmptyStacks:
    """Every instance an orphan: the scan, CPU queries and verdicts run; nothing is destroyed (dry run)."""

    def list(self) -> list[Any]:
        return []

    def destroy(self, name: str) -> None:
        raise AssertionError("dry run")


def measure(total: int, runs: int) -> dict[str, Any]:
    import boto3

    from nomadrig.reaper.aws import AwsReaperCloud
    from nomadrig.reaper.ports import StackRef
    from nomadrig.reaper.run import run_reaper

    seconds_seed = seed(total)
    calls: Counter[str] = Counter()
    session = boto3.Session()
    session.events.register("before-parameter-build", lambda model, **_: calls.update([model.name]))
    from botocore.config import Config

    # moto answers a 1,000-instance page of a 3,334-instance region in over a minute on a busy
    # machine: wait for it instead of failing at botocore's 60 s read timeout.
    slow_emulator = Config(read_timeout=900, retries={"max_attempts": 1})
    cloud = AwsReaperCloud(REGIONS, session=session, client_config=slow_emulator)

    scan_times, found = [], 0
    for _ in range(runs):
        calls.clear()
        start = time.perf_counter()
        found = len(cloud.list_instances(TEAM))
        scan_times.append(time.perf_counter() - start)
    scan_calls = dict(calls)

    instances = cloud.list_instances(TEAM)

    class AllStacks(EmptyStacks):
        def list(self) -> list[StackRef]:
            return [StackRef(f"s-{i.instance_id}", "n", "aws", i.region, i.instance_id) for i in instances]

    team = _team()
    calls.clear()
    start = time.perf_counter()
    report = run_reaper(team, apply=False, orphans=False, stacks=AllStacks(), aws=cloud)
    dry_run_s = time.perf_counter() - start
    return {
        "total": total,
        "found": found,
        "seed_s": seconds_seed,
        "scan_s": scan_times,
        "scan_calls": scan_calls,
        "dry_run_s": dry_run_s,
        "dry_run_calls": dict(calls),
        "verdicts": len(report.verdicts),
    }


def _team() -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(
        name=TEAM,
        policy=SimpleNamespace(stopped_destroy_after_hours=168, max_idle_minutes=60),
        state=SimpleNamespace(backend_url="file:///tmp/nomadrig-bench-state"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reaper_scan.txt"))
    parser.add_argument("--append", action="store_true", help="add to the results file instead of replacing it")
    args = parser.parse_args(argv)

    import requests
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    lines: list[str] = []
    try:
        for size in args.sizes:
            requests.post(f"{url}/moto-api/reset", timeout=60).raise_for_status()
            load_before = os.getloadavg()[0]
            r = measure(size, args.runs)
            load_after = os.getloadavg()[0]
            line = (
                f"reaper scan, {r['found']} managed instances in {len(REGIONS)} regions (moto): "
                f"median {statistics.median(r['scan_s']):.2f} s ({args.runs} runs, "
                f"min {min(r['scan_s']):.2f}, max {max(r['scan_s']):.2f}), "
                f"API calls per scan: {_calls(r['scan_calls'])}\n"
                f"  full dry run (scan + CPU metric for {r['verdicts']} boxes + verdicts): {r['dry_run_s']:.2f} s, "
                f"API calls: {_calls(r['dry_run_calls'])}\n"
                f"  seeding {r['total']} instances (run_instances, {BATCH} a batch): {r['seed_s']:.1f} s "
                f"(not part of the scan); load average {load_before:.1f} before, {load_after:.1f} after\n"
                f"  note: moto pages DescribeInstances by reservation; the seed made {reservations(size)} "
                f"reservations of up to {BATCH} instances, so each region fit one page of 1,000. "
                f"Where every box is its own reservation (one RunInstances per box), the same scan is "
                f"{one_per_box_calls(size)} pages of 1,000 (computed, not measured)."
            )
            print(line, flush=True)
            lines.append(line)
    finally:
        server.stop()
    import moto

    footer = (
        f"machine: {os.cpu_count()} cores, {_mem_gib()} GiB, Python {platform.python_version()}, "
        f"moto {moto.__version__}, shared with other jobs (see load averages); "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(footer)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.read_text() if args.append and args.out.exists() else ""
    args.out.write_text(previous + "\n".join([*lines, footer]) + "\n")
    return 0


def per_region(total: int) -> list[int]:
    return [total // len(REGIONS) + (1 if r < total % len(REGIONS) else 0) for r in range(len(REGIONS))]


def reservations(total: int) -> int:
    return sum(-(-n // BATCH) for n in per_region(total))


def one_per_box_calls(total: int) -> int:
    return sum(-(-n // 1000) for n in per_region(total))


def _calls(counter: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counter.items())) or "none"


def _mem_gib() -> int:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError):
        return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
