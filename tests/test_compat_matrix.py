"""The GPU compatibility matrix and `decide`: what a tower gets installed, or why not and what to type.

The cases come from NVIDIA's, PyTorch's, JAX's, Debian's and Ubuntu's documents; each names
the document it is taken from. The property tests check every plan against the rules,
re-derived here from the CSV files with the csv module (not through nomadrig's loader), and
that every refusal names a field and a fix.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nomadrig.catalog import CatalogError, load_catalog
from nomadrig.compat import DEFAULT_DATA_DIR, InstallPlan, Refusal, TowerRequest, decide, load_matrix

REPO = Path(__file__).resolve().parents[1]

# Documents the cases cite (section in the case's own source string).
CUDA_NOTES = "docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html"
CUDA_GPUS = "developer.nvidia.com/cuda-gpus"
LEGACY_GPUS = "developer.nvidia.com/cuda-legacy-gpus"
KERNEL_OPEN_515 = "download.nvidia.com/XFree86/Linux-aarch64/515.48.07/README/kernel_open.html"
KERNEL_OPEN_525 = "download.nvidia.com/XFree86/Linux-aarch64/525.147.05/README/kernel_open.html"
OPEN_545 = "github.com/NVIDIA/open-gpu-kernel-modules/releases/tag/545.23.06"
OPEN_BLOG = "developer.nvidia.com/blog/nvidia-transitions-fully-towards-open-source-gpu-kernel-modules"
LEGACY_580 = "NVIDIA Unix graphics feature deprecation schedule (forums.developer.nvidia.com)"
DC_LIFECYCLE = "docs.nvidia.com/datacenter/tesla/drivers/supported-drivers-and-cuda-toolkit-versions.html"
TORCH_PREVIOUS = "pytorch.org/get-started/previous-versions"
TORCH_MATRIX = "github.com/pytorch/pytorch RELEASE.md, PyTorch CUDA Support Matrix (pytorch/pytorch#164471)"
TORCH_BUILD = "github.com/pytorch/pytorch .ci/manywheel/build_cuda.sh"
JAX_INSTALL = "docs.jax.dev/en/latest/installation.html, NVIDIA GPU"
JAX_071 = "JAX v0.7.1 release notes"
DEB_PKGS = "packages.debian.org"
UBU_PKGS = "packages.ubuntu.com"


@dataclass(frozen=True)
class Case:
    """One request, what must come back, and the document the expectation is read from."""

    name: str
    source: str
    request: TowerRequest
    plan: dict = field(default_factory=dict)  # attribute -> value, or a predicate on the value
    refuse: dict = field(default_factory=dict)  # field, message (substrings), fix (substrings)


def _wheel_cuda_at_least(version: tuple[int, int]):
    return lambda pins: all(tuple(map(int, p.cuda.split("."))) >= version for p in pins)


def _wheel_cuda_at_most(version: tuple[int, int]):
    return lambda pins: all(tuple(map(int, p.cuda.split("."))) <= version for p in pins)


def _pins(*requirements: str):
    return lambda pins: set(requirements) <= {r for p in pins for r in p.requirements}


R = TowerRequest
CASES = [
    # --- Blackwell: branch 570+, open modules, cu128+ wheels
    Case("rtx5090-debian12-distro-needs-nvidia-repo",
         f"{CUDA_GPUS} (RTX 5090: 12.0); {CUDA_NOTES} Table 3 (12.8 GA >= 570.26); {DEB_PKGS} bookworm 535.261.03",
         R(gpus=("RTX 5090",), os="debian-12", path="towers[0]"),
         refuse={"field": "towers[0].driver_channel", "message": ["RTX 5090", "570", "535"],
                 "fix": ["driver_channel: cuda_repo"]}),
    Case("rtx5090-nvidia-repo-open-570plus-cu128plus",
         f"{OPEN_BLOG} (Blackwell requires open modules); {TORCH_MATRIX} (12.8/13.0 builds cover 12.0)",
         R(gpus=("RTX 5090",), os="debian-12", channel="cuda_repo"),
         plan={"kernel_modules": "open", "driver_branch": lambda b: int(b) >= 570,
               "frameworks": _wheel_cuda_at_least((12, 8))}),
    Case("rtx5090-ubuntu2404-archive-580",
         f"{UBU_PKGS} noble nvidia-driver-580 580.173.02; {OPEN_BLOG}; {TORCH_MATRIX}",
         R(gpus=("RTX 5090",), os="ubuntu-24.04"),
         plan={"driver_branch": "580", "kernel_modules": "open", "frameworks": _wheel_cuda_at_least((12, 8)),
               "signed_modules": "yes"}),
    Case("rtx5090-proprietary-refused",
         f"{OPEN_BLOG}: proprietary drivers are unsupported on Blackwell",
         R(gpus=("RTX 5090",), os="debian-12", channel="cuda_repo", flavour="proprietary"),
         refuse={"field": "kernel_modules", "message": ["RTX 5090", "open kernel modules"],
                 "fix": ["kernel_modules: open"]}),
    Case("rtx5090-branch-550-refused",
         f"{CUDA_NOTES} Table 3: CUDA 12.8 GA needs >= 570.26",
         R(gpus=("RTX 5090",), os="debian-12", channel="cuda_repo", branch="550"),
         refuse={"field": "driver_branch", "message": ["RTX 5090", "570"], "fix": ['driver_branch: "5']}),
    Case("rtx5090-torch-2.6-has-no-blackwell-kernels",
         f"{TORCH_PREVIOUS} (2.6.0: cu118, cu124, cu126); {TORCH_BUILD} (12.6 list ends at 9.0)",
         R(gpus=("RTX 5090",), os="debian-12", channel="cuda_repo", frameworks=("pytorch==2.6.0",)),
         refuse={"field": "frameworks[0]", "message": ["torch 2.6.0", "RTX 5090"], "fix": ["pytorch=="]}),
    Case("b200-debian13-distro-550-too-old",
         f"{CUDA_GPUS} (B200: 10.0); {CUDA_NOTES} Table 3; {DEB_PKGS} trixie 550.163.01",
         R(gpus=("B200",), os="debian-13"),
         refuse={"field": "driver_channel", "message": ["B200", "570", "550"], "fix": ["cuda_repo"]}),
    # --- RTX 4090 on Debian 12's 535: open needs the unsupported-GPUs parameter, proprietary by default
    Case("rtx4090-debian12-default-proprietary",
         f"{KERNEL_OPEN_525} (GeForce open modules alpha, need NVreg_OpenRmEnableUnsupportedGpus); {OPEN_545}",
         R(gpus=("RTX 4090",), os="debian-12"),
         plan={"driver_branch": "535", "kernel_modules": "proprietary", "open_unsupported_gpus_param": False}),
    Case("rtx4090-debian12-open-sets-unsupported-gpus-param",
         f"{KERNEL_OPEN_525}: set NVreg_OpenRmEnableUnsupportedGpus=1 for GeForce and Workstation GPUs",
         R(gpus=("RTX 4090",), os="debian-12", flavour="open"),
         plan={"kernel_modules": "open", "open_unsupported_gpus_param": True}),
    Case("rtx4090-debian13-open-needs-no-param",
         f"{OPEN_545}: beta-quality GeForce/Workstation support; 550 README: no parameter needed",
         R(gpus=("RTX 4090",), os="debian-13", flavour="open"),
         plan={"driver_branch": "550", "kernel_modules": "open", "open_unsupported_gpus_param": False}),
    Case("rtx4090-debian12-wheel-runs-on-535",
         f"{CUDA_NOTES} Table 3 (535 runs CUDA up to 12.2); {TORCH_PREVIOUS}",
         R(gpus=("RTX 4090",), os="debian-12"),
         plan={"cuda_toolkit": "11.8", "python": "3.11", "frameworks": _wheel_cuda_at_most((12, 2))}),
    Case("rtx6000ada-workstation-open-on-535-needs-param",
         f"{CUDA_GPUS} (RTX 6000 Ada: Workstation column); {KERNEL_OPEN_525}",
         R(gpus=("RTX 6000 Ada",), os="debian-12", flavour="open"),
         plan={"open_unsupported_gpus_param": True}),
    Case("h100-open-on-535-without-param",
         f"{KERNEL_OPEN_515}: open modules production on data-center GPUs; {CUDA_GPUS} (H100: Data Center)",
         R(gpus=("H100",), os="debian-12"),
         plan={"kernel_modules": "open", "open_unsupported_gpus_param": False}),
    Case("a100-80gb-open-by-default-on-datacenter",
         f"{KERNEL_OPEN_515}; {CUDA_GPUS} (A100: 8.0)",
         R(gpus=("A100 80GB",), os="debian-12"),
         plan={"kernel_modules": "open", "gpus": ("A100 80GB",)}),
    # --- pre-Turing: proprietary only, last branch 580, CUDA stops at 12.x
    Case("v100-proprietary",
         f"{KERNEL_OPEN_515}: open flavour needs GSP, Turing and later; {LEGACY_GPUS} (V100: 7.0)",
         R(gpus=("V100",), os="debian-12"),
         plan={"kernel_modules": "proprietary"}),
    Case("v100-open-refused",
         f"{KERNEL_OPEN_515}: the open kernel modules cannot support GPUs before Turing",
         R(gpus=("V100",), os="debian-12", flavour="open"),
         refuse={"field": "kernel_modules", "message": ["V100", "Turing"], "fix": ["kernel_modules: proprietary"]}),
    Case("v100-branch-590-past-its-last-580",
         f"{LEGACY_580}: the 580 series is the last for Maxwell, Pascal and Volta",
         R(gpus=("V100",), os="debian-12", channel="cuda_repo", branch="590"),
         refuse={"field": "driver_branch", "message": ["V100", "580"], "fix": ['driver_branch: "580"']}),
    Case("v100-cuda-13-refused",
         f"{CUDA_NOTES} 13.0, Deprecated Architectures: Maxwell, Pascal, Volta removed",
         R(gpus=("V100",), os="debian-12", channel="cuda_repo", cuda="13.0"),
         refuse={"field": "cuda_version", "message": ["V100", "13.0"], "fix": ['cuda_version: "12.9"']}),
    Case("v100-nvidia-repo-stays-on-580-and-cuda-12",
         f"{LEGACY_580}; {CUDA_NOTES} 13.0 Deprecated Architectures",
         R(gpus=("V100 32GB",), os="debian-12", channel="cuda_repo"),
         plan={"driver_branch": lambda b: int(b) <= 580, "cuda_toolkit": lambda t: t.startswith("12."),
               "kernel_modules": "proprietary"}),
    Case("p100-gets-a-cu126-wheel",
         f"{TORCH_MATRIX}: 12.6 builds keep Pascal (6.0), 12.8 and 13.0 drop it; {LEGACY_GPUS} (P100: 6.0)",
         R(gpus=("P100",), os="debian-12", channel="cuda_repo"),
         plan={"frameworks": lambda pins: [p.variant for p in pins] == ["cu126"]}),
    Case("gtx1080ti-cu128-wheel-refused",
         f"{TORCH_MATRIX}: 12.8.1 builds start at Volta (7.0); {LEGACY_GPUS} (GTX 1080 Ti: 6.1)",
         R(gpus=("GTX 1080 Ti",), os="debian-12", channel="cuda_repo", frameworks=("pytorch==2.7.1",),
           cuda="12.8"),
         plan={"frameworks": lambda pins: [p.variant for p in pins] != ["cu128"]}),
    # --- mixed generations
    Case("pascal-and-ada-share-the-proprietary-driver",
         f"{OPEN_BLOG}: mixed deployments of older and newer GPUs should use the proprietary driver",
         R(gpus=("GTX 1080 Ti", "RTX 4090"), os="debian-12"),
         plan={"kernel_modules": "proprietary", "driver_branch": "535"}),
    Case("pascal-and-ada-open-refused-naming-the-pascal",
         f"{KERNEL_OPEN_515}: open modules need GSP (Turing and later)",
         R(gpus=("GTX 1080 Ti", "RTX 4090"), os="debian-12", flavour="open"),
         refuse={"field": "kernel_modules", "message": ["GTX 1080 Ti"], "fix": ["proprietary"]}),
    Case("pascal-and-blackwell-cannot-share-a-driver",
         f"{KERNEL_OPEN_515} (Pascal: proprietary only); {OPEN_BLOG} (Blackwell: open only)",
         R(gpus=("GTX 1080 Ti", "RTX 5090"), os="debian-12", channel="cuda_repo"),
         refuse={"field": "gpus", "message": ["GTX 1080 Ti", "RTX 5090"], "fix": ["separate towers"]}),
    Case("l4-and-l40s-datacenter-ada-open",
         f"{CUDA_GPUS} (L4, L40S: 8.9, Data Center); {KERNEL_OPEN_515}",
         R(gpus=("L4", "L40S"), os="debian-12"),
         plan={"kernel_modules": "open", "open_unsupported_gpus_param": False}),
    # --- CUDA toolkit against the driver branch and the archive
    Case("cuda-13-on-550-refused-with-both-fixes",
         f"{CUDA_NOTES} Table 3: CUDA 13.0 GA needs >= 580.65.06; 12.4 GA >= 550.54.14",
         R(gpus=("RTX 4090",), os="debian-12", channel="cuda_repo", branch="550", cuda="13.0"),
         refuse={"field": "cuda_version", "message": ["13.0", "580.65.06", "12.4"],
                 "fix": ['driver_branch: "580"', 'cuda_version: "12.4"']}),
    Case("cuda-13-needs-branch-580",
         f"{CUDA_NOTES} Table 3: CUDA 13.0 GA needs >= 580.65.06",
         R(gpus=("RTX 4090",), os="debian-12", channel="cuda_repo", cuda="13.0"),
         plan={"cuda_toolkit": "13.0", "driver_branch": lambda b: int(b) >= 580}),
    Case("cuda-12.8-on-570",
         f"{CUDA_NOTES} Table 3: CUDA 12.8 GA needs >= 570.26",
         R(gpus=("RTX 5090",), os="ubuntu-22.04", channel="cuda_repo", branch="570", cuda="12.8"),
         plan={"driver_branch": "570", "cuda_toolkit": "12.8", "frameworks": _wheel_cuda_at_most((12, 8))}),
    Case("debian13-archive-has-toolkit-12.4-not-13",
         f"{DEB_PKGS}/nvidia-cuda-toolkit: trixie 12.4.131~12.4.1-2",
         R(gpus=("RTX 4090",), os="debian-13", cuda="13.0"),
         refuse={"field": "cuda_version", "message": ["12.4"], "fix": ['cuda_version: "12.4"', "cuda_repo"]}),
    Case("debian12-archive-has-toolkit-11.8",
         f"{DEB_PKGS}/nvidia-cuda-toolkit: bookworm 11.8.89~11.8.0-5~deb12u1",
         R(gpus=("T4",), os="debian-12", cuda="12.4"),
         refuse={"field": "cuda_version", "message": ["11.8"], "fix": ['cuda_version: "11.8"']}),
    # --- Ubuntu's archive: only its branches, no transitional names
    Case("ubuntu2404-branch-535-is-transitional",
         f"{UBU_PKGS}/noble/nvidia-dkms-535: 535.309.01-0ubuntu0.24.04.2 depends on nvidia-dkms-580",
         R(gpus=("RTX 4090",), os="ubuntu-24.04", branch="535"),
         refuse={"field": "driver_branch", "message": ["transitional", "580"],
                 "fix": ['driver_branch: "580"', "cuda_repo"]}),
    Case("ubuntu2404-archive-lacks-570",
         f"{UBU_PKGS} noble: nvidia-graphics-drivers-580 is the branch offered",
         R(gpus=("RTX 4090",), os="ubuntu-24.04", branch="570"),
         refuse={"field": "driver_branch", "message": ["570", "580"], "fix": ['driver_branch: "580"']}),
    Case("ubuntu2404-570-through-nvidia-repo",
         f"{DC_LIFECYCLE} (R570 production branch); {CUDA_NOTES} Table 3",
         R(gpus=("RTX 4090",), os="ubuntu-24.04", channel="cuda_repo", branch="570"),
         plan={"driver_branch": "570", "channel": "cuda_repo"}),
    Case("ubuntu2204-535-rtx3090",
         f"{UBU_PKGS}/jammy/nvidia-dkms-535-open 535.309.01; jammy nvidia-cuda-toolkit 11.5.1; {CUDA_GPUS} (8.6)",
         R(gpus=("RTX 3090",), os="ubuntu-22.04", branch="535"),
         plan={"driver_branch": "535", "cuda_toolkit": "11.5", "python": "3.10",
               "kernel_modules": "proprietary"}),
    # --- Python of the release and wheels
    Case("ubuntu2604-python314-torch-2.6-refused",
         f"{UBU_PKGS}/resolute/python3 3.14.3; {TORCH_PREVIOUS} (2.6.0: cp39-cp313)",
         R(gpus=("RTX 4090",), os="ubuntu-26.04", frameworks=("pytorch==2.6.0", "jax")),
         refuse={"field": "frameworks[0]", "message": ["torch 2.6.0", "3.14"],
                 "fix": ['"pytorch==2.9.1"', '"jax"']}),
    Case("ubuntu2604-default-torch-with-cp314",
         f"{UBU_PKGS}/resolute/python3 3.14.3; {TORCH_PREVIOUS} (2.9.1; requires-python >=3.10, cp314)",
         R(gpus=("RTX 4090",), os="ubuntu-26.04"),
         plan={"python": "3.14", "driver_branch": "580", "frameworks": _pins("torch==2.9.1")}),
    Case("ubuntu2604-jax-0.4.38-refused",
         f"{UBU_PKGS}/resolute/python3; {JAX_071} (Python 3.14 wheels)",
         R(gpus=("L4",), os="ubuntu-26.04", frameworks=("jax==0.4.38",)),
         refuse={"field": "frameworks[0]", "message": ["jax 0.4.38", "3.14"], "fix": ['"jax==0.7.1"']}),
    Case("t4-debian12-jax-cuda12-on-535",
         f"{JAX_INSTALL}: driver >= 525.60.13 for CUDA 12; {JAX_071}; {CUDA_GPUS} (T4: 7.5)",
         R(gpus=("T4",), os="debian-12", frameworks=("jax",)),
         plan={"frameworks": _pins("jax[cuda12]==0.7.1")}),
    Case("h200-ubuntu2404",
         f"{CUDA_GPUS} (H200: 9.0); {UBU_PKGS} noble nvidia-driver-580",
         R(gpus=("H200",), os="ubuntu-24.04"),
         plan={"driver_branch": "580", "kernel_modules": "open", "python": "3.12"}),
    Case("branch-535-end-of-life-noted",
         f"{DC_LIFECYCLE}: R535 LTSB end of life June 2026",
         R(gpus=("A10G",), os="debian-12"),
         plan={"notes": lambda notes: any("end of life" in n for n in notes)}),
    Case("unknown-gpu-named-with-its-field",
         f"{CUDA_GPUS} lists no 'RTX 9999'",
         R(gpus=("RTX 4090", "RTX 9999"), os="debian-12", path="towers[2]"),
         refuse={"field": "towers[2].gpus[1].model", "message": ["RTX 9999"], "fix": ["gpus.csv"]}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide_follows_the_documents(case):
    decision = decide(case.request)
    if case.plan:
        assert isinstance(decision, InstallPlan), (case.source, _rendered(decision))
        for attribute, expected in case.plan.items():
            value = getattr(decision, attribute)
            ok = expected(value) if callable(expected) else value == expected
            assert ok, f"{attribute}={value!r} (source: {case.source})"
        assert not _violations(case.request, decision), _violations(case.request, decision)
    else:
        assert isinstance(decision, Refusal), (case.source, decision)
        matching = [p for p in decision.problems if p.path == case.refuse["field"]]
        assert matching, f"no problem on {case.refuse['field']}: {_rendered(decision)}"
        problem = matching[0]
        for text in case.refuse.get("message", []):
            assert text in problem.message, (text, problem.message, case.source)
        for text in case.refuse.get("fix", []):
            assert text in problem.fix, (text, problem.fix, case.source)


def test_there_are_at_least_thirty_cited_cases():
    assert len(CASES) >= 30
    assert all(c.source.strip() for c in CASES)


def _rendered(decision) -> str:
    return decision.render("team.yaml") if isinstance(decision, Refusal) else repr(decision)


# --- the data ---------------------------------------------------------------------------------


def test_every_catalog_gpu_is_in_the_matrix():
    matrix = load_matrix()
    missing = [g.model for g in load_catalog().gpu_models() if matrix.gpu(g.model) is None]
    assert missing == []


@pytest.mark.parametrize("name", ["V100", "P100", "GTX 1080 Ti", "RTX 5090", "RTX 5080", "B200", "H200", "L40S",
                                  "RTX 6000 Ada", "RTX A6000", "A100", "H100", "T4", "L4", "A10G", "RTX 3090",
                                  "RTX 4090", "NVIDIA GeForce RTX 4090", "nvidia-tesla-t4", "nvidia-h100-80gb"])
def test_the_gpus_teams_ask_about_resolve(name):
    assert load_matrix().gpu(name) is not None


@pytest.mark.parametrize(("branch", "cuda"), [(470, "11.4"), (520, "11.8"), (525, "12.0"), (535, "12.2"),
                                              (550, "12.4"), (570, "12.8"), (580, "13.0")])
def test_branch_to_newest_cuda_follows_table_3(branch, cuda):
    # CUDA Toolkit release notes, Table 3 "CUDA Toolkit and Corresponding Driver Versions".
    newest = load_matrix().max_cuda(branch)
    assert f"{newest[0]}.{newest[1]}" == cuda


def test_every_row_names_a_source_and_a_date():
    for path in sorted(DEFAULT_DATA_DIR.glob("*.csv")):
        for row in _table(path.name):
            assert row["source"].strip() and row["date"].strip(), (path.name, row)


def test_a_broken_row_is_reported_with_file_line_and_column(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, data)
    text = (data / "gpus.csv").read_text().replace("RTX 4090,,8.9,geforce", "RTX 4090,,8.9,gamer")
    (data / "gpus.csv").write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("RTX 4090,"))
    with pytest.raises(CatalogError) as error:
        load_matrix(data)
    assert str(error.value).startswith(f"gpus.csv:{line}:segment: segment is 'gamer'")


def test_a_gpu_with_an_unknown_compute_capability_is_refused_on_load(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DEFAULT_DATA_DIR, data)
    with (data / "gpus.csv").open("a") as out:
        out.write("Imaginary,,99.0,geforce,made up,2026-12-01\n")
    with pytest.raises(CatalogError, match="compute_capability is not in compute_capabilities.csv"):
        load_matrix(data)


def test_every_gpu_alone_gets_a_plan_from_nvidia_repository():
    # Whatever a team buys from the matrix, one channel drives it.
    for model in load_matrix().gpu_models():
        request = TowerRequest(gpus=(model,), os="debian-12", channel="cuda_repo", frameworks=("pytorch", "jax"))
        decision = decide(request)
        assert isinstance(decision, InstallPlan), _rendered(decision)
        assert not _violations(request, decision)


def test_importing_the_matrix_stays_light():
    code = ("import sys, nomadrig.compat; nomadrig.compat.load_matrix(); "
            "print(sorted(m for m in ('pandas', 'pydantic', 'yaml', 'typer', 'rich', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_the_same_request_gets_the_same_answer():
    request = TowerRequest(gpus=("GTX 1080 Ti", "RTX 4090"), os="ubuntu-22.04", frameworks=("pytorch", "jax"))
    assert decide(request) == decide(request)


# --- an independent reading of the rules ------------------------------------------------------


def _table(name: str) -> list[dict[str, str]]:
    lines = [line for line in (DEFAULT_DATA_DIR / name).read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def _v(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


class Rules:
    """The CSVs read with the csv module, and the rules of SOURCES.md applied to a plan."""

    def __init__(self) -> None:
        self.cuda_branch = {_v(r["cuda"]): int(r["min_driver"].split(".")[0]) for r in _table("cuda.csv")}
        self.toolkits = {_v(r["cuda"]) for r in _table("cuda.csv") if r["role"] == "toolkit"}
        self.open_level = {int(r["branch"]): r["open_modules"] for r in _table("branches.csv")}
        self.archs = {r["architecture"]: r for r in _table("architectures.csv")}
        self.ccs = {_v(r["compute_capability"]): r for r in _table("compute_capabilities.csv")}
        self.gpus = {r["gpu_model"]: r for r in _table("gpus.csv")}
        self.releases = {r["release"]: r for r in _table("releases.csv")}
        self.archive = {(r["release"], int(r["branch"])): r for r in _table("distro_drivers.csv")}
        self.wheels = {(r["framework"], r["version"], r["variant"]): r for r in _table("wheels.csv")}

    def gpu(self, model: str) -> tuple[dict, dict, dict]:
        row = self.gpus[model]
        cc = self.ccs[_v(row["compute_capability"])]
        return row, cc, self.archs[cc["architecture"]]

    def violations(self, request: TowerRequest, plan: InstallPlan) -> list[str]:
        found: list[str] = []
        release = self.releases[plan.os]
        branch, toolkit = int(plan.driver_branch), _v(plan.cuda_toolkit)
        expected_python = request.python or release["python"]
        for name, want, got in (("os", request.os, plan.os), ("python", expected_python, plan.python),
                                ("channel", request.channel, plan.channel),
                                ("branch", request.branch or plan.driver_branch, plan.driver_branch),
                                ("flavour", request.flavour or plan.kernel_modules, plan.kernel_modules),
                                ("cuda", request.cuda or plan.cuda_toolkit, plan.cuda_toolkit)):
            if want != got:
                found.append(f"{name}: asked {want}, plan has {got}")
        found += self._driver(plan, branch)
        found += self._channel(plan, release, branch, toolkit)
        found += self._toolkit(plan, branch, toolkit)
        found += self._wheels(request, plan, branch)
        return found

    def _driver(self, plan: InstallPlan, branch: int) -> list[str]:
        found = []
        level = self.open_level[branch]
        consumer = False
        for model in plan.gpus:
            row, cc, arch = self.gpu(model)
            consumer |= row["segment"] != "datacenter"
            if branch < self.cuda_branch[_v(cc["first_cuda"])]:
                found.append(f"{model} predates branch {branch}")
            if arch["max_branch"] and branch > int(arch["max_branch"]):
                found.append(f"{model} is past its last branch")
            if (arch["open_modules"], plan.kernel_modules) in {("unsupported", "open"), ("required", "proprietary")}:
                found.append(f"{model} cannot load {plan.kernel_modules} modules")
        if plan.kernel_modules == "open" and level == "none":
            found.append(f"branch {branch} has no open modules")
        wanted = plan.kernel_modules == "open" and level == "datacenter" and consumer
        if plan.open_unsupported_gpus_param != wanted:
            found.append(f"NVreg_OpenRmEnableUnsupportedGpus should be {wanted}")
        return found

    def _channel(self, plan: InstallPlan, release: dict, branch: int, toolkit: tuple) -> list[str]:
        if plan.channel == "cuda_repo":
            return [] if release["cuda_repo"] else ["no NVIDIA repository for the release"]
        row = self.archive.get((plan.os, branch))
        found = []
        if row is None or row["status"] != "current" or plan.kernel_modules not in row["flavours"].split(";"):
            found.append(f"the archive of {plan.os} has no {plan.kernel_modules} branch {branch}")
        if toolkit != _v(release["toolkit"]):
            found.append("the archive's toolkit is another version")
        return found

    def _toolkit(self, plan: InstallPlan, branch: int, toolkit: tuple) -> list[str]:
        found = [] if toolkit in self.toolkits and self.cuda_branch[toolkit] <= branch else [
            f"CUDA {plan.cuda_toolkit} does not run on branch {branch}"]
        for model in plan.gpus:
            _, _, arch = self.gpu(model)
            if arch["max_cuda"] and toolkit > _v(arch["max_cuda"]):
                found.append(f"CUDA {plan.cuda_toolkit} cannot build for {model}")
        return found

    def _wheels(self, request: TowerRequest, plan: InstallPlan, branch: int) -> list[str]:
        found = []
        asked = {item.split("==")[0]: (item.split("==") + [None])[1] for item in request.frameworks}
        if sorted(p.framework for p in plan.frameworks) != sorted(asked):
            found.append(f"frameworks {[p.framework for p in plan.frameworks]} for {list(asked)}")
        python = _v(plan.python)
        for pin in plan.frameworks:
            row = self.wheels[(pin.framework, pin.version, pin.variant)]
            cuda = _v(row["cuda"])
            needed = int(row["min_driver_branch"]) if row["min_driver_branch"] else self.cuda_branch[cuda]
            if asked.get(pin.framework) not in (None, pin.version):
                found.append(f"{pin.framework} {pin.version} is not the pinned version")
            if not _v(row["python_min"]) <= python <= _v(row["python_max"]):
                found.append(f"{pin.framework} {pin.version} has no wheel for Python {plan.python}")
            if needed > branch:
                found.append(f"{pin.framework} {pin.version} ({pin.variant}) needs branch {needed}")
            if pin.requirements != tuple(row["requirements"].split(";")) or pin.index_url != row["index_url"]:
                found.append(f"{pin.framework} pins differ from the row")
            for model in plan.gpus:
                found += self._kernels(model, row, pin)
        return found

    def _kernels(self, model: str, row: dict, pin) -> list[str]:
        gpu, cc, arch = self.gpu(model)
        capability = _v(gpu["compute_capability"])
        archs = [_v(a) for a in row["archs"].split(";") if a]
        covered = capability >= _v(row["min_cc"]) and (
            not archs or any(a[0] == capability[0] and a[1] <= capability[1] for a in archs))
        cuda = _v(row["cuda"])
        in_range = cuda >= _v(cc["first_cuda"]) and (not arch["max_cuda"] or cuda <= _v(arch["max_cuda"]))
        return [] if covered and in_range else [f"{pin.framework} {pin.variant} has no kernels for {model}"]


RULES = Rules()


def _violations(request: TowerRequest, plan: InstallPlan) -> list[str]:
    return RULES.violations(request, plan)


# --- properties over every combination ----------------------------------------------------------

_MATRIX = load_matrix()
GPU_NAMES = sorted({*(g.model for g in load_catalog().gpu_models()), *_MATRIX.gpu_models()})
RELEASES = sorted(_MATRIX.releases)
BRANCHES = [str(b) for b in sorted(_MATRIX.branches)]
TOOLKITS = [f"{v[0]}.{v[1]}" for v in _MATRIX.toolkits()]
FRAMEWORK_ITEMS = ["pytorch", "jax", "pytorch==2.6.0", "pytorch==2.9.1", "pytorch==2.7.1", "jax==0.4.38",
                   "jax==0.7.1"]

requests = st.builds(
    TowerRequest,
    gpus=st.lists(st.sampled_from(GPU_NAMES), max_size=3).map(tuple),
    os=st.sampled_from(RELEASES),
    channel=st.sampled_from(["distro", "cuda_repo"]),
    branch=st.none() | st.sampled_from(BRANCHES),
    flavour=st.sampled_from([None, "open", "proprietary"]),
    cuda=st.none() | st.sampled_from(TOOLKITS),
    frameworks=st.lists(st.sampled_from(FRAMEWORK_ITEMS), max_size=2, unique=True).map(tuple),
    python=st.sampled_from([None, "3.10", "3.11", "3.12", "3.13", "3.14"]),
    path=st.sampled_from(["", "towers[0]", "towers[7]"]),
)

junk = st.sampled_from(["", " ", "RTX 4090\n", "ubuntu-24.04 ", "5 80", "12.4.1", "none", "3", "ÆØÅ", "x" * 300])
odd_requests = st.builds(
    TowerRequest,
    gpus=st.lists(st.sampled_from(GPU_NAMES) | junk, max_size=3).map(tuple),
    os=st.sampled_from(RELEASES) | junk,
    channel=st.sampled_from(["distro", "cuda_repo"]) | junk,
    branch=st.none() | st.sampled_from(BRANCHES) | junk,
    flavour=st.sampled_from([None, "open", "proprietary"]) | junk,
    cuda=st.none() | st.sampled_from(TOOLKITS) | junk,
    frameworks=st.lists(st.sampled_from(FRAMEWORK_ITEMS) | junk, max_size=3).map(tuple),
    python=st.none() | st.sampled_from(["3.11", "3.14"]) | junk,
    path=st.sampled_from(["", "towers[1]"]),
)


def _assert_answer(request: TowerRequest, decision) -> None:
    if isinstance(decision, InstallPlan):
        assert not _violations(request, decision), (request, _violations(request, decision))
        return
    assert isinstance(decision, Refusal) and decision.problems, (request, decision)
    for problem in decision.problems:
        assert problem.path and problem.message.strip() and problem.fix.strip(), (request, problem)
        if request.path:
            assert problem.path.startswith(request.path + "."), (request.path, problem.path)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_every_plan_obeys_the_rules_and_every_refusal_names_a_field_and_a_fix(request):
    _assert_answer(request, decide(request))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_requests)
def test_decide_never_raises_on_odd_values(request):
    _assert_answer(request, decide(request))


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("channel", ["distro", "cuda_repo"])
@pytest.mark.parametrize("flavour", [None, "open", "proprietary"])
def test_every_catalog_gpu_on_every_release_channel_and_flavour(release, channel, flavour):
    for model in GPU_NAMES:
        for branch in [None, *BRANCHES]:
            request = TowerRequest(gpus=(model,), os=release, channel=channel, branch=branch, flavour=flavour)
            _assert_answer(request, decide(request))
