"""From a tower's GPUs, OS release and wishes to an install plan, or a refusal that says what to type.

`decide` is pure: it reads the shipped matrix (once per process) and nothing else, never
raises on a request of the right shape, and returns the same answer for the same request.
What the request leaves out (branch, kernel-module flavour, toolkit, wheel versions, Python)
is chosen from the GPUs; what it fixes is checked against them. The rules it applies:

* a GPU runs on branches from the one whose driver first ran its compute capability (CUDA
  release notes, Table 3) up to its architecture's last branch (Kepler 470; Maxwell, Pascal,
  Volta 580);
* open kernel modules need Turing or newer, Blackwell needs them; before 545 GeForce and
  workstation GPUs load them only with NVreg_OpenRmEnableUnsupportedGpus=1;
* a toolkit needs its Table-3 driver, and Maxwell/Pascal/Volta stop at CUDA 12.x;
* the distro channel installs what the release's archive has (branch, flavours, toolkit);
* framework wheels bring their own CUDA runtime: they need a driver branch, a Python and
  kernels for the GPUs, never a matching system toolkit.

Problems name the team-file field (`FIELDS`) under the request's `path`, e.g.
``towers[0].driver_branch``, and the fix as the user types it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from nomadrig.compat.matrix import FLAVOURS, FRAMEWORKS, Matrix, load_matrix
from nomadrig.compat.model import DistroDriver, Gpu, Release, Version, Wheel, fmt, parse_version, release_key
from nomadrig.errors import InputProblem, shown

CHANNELS = ("distro", "cuda_repo")
#: The team-file field each part of a request comes from (problems name these under `path`).
FIELDS = {"gpus": "gpus", "os": "os", "channel": "driver_channel", "branch": "driver_branch",
          "flavour": "kernel_modules", "cuda": "cuda_version", "frameworks": "frameworks", "python": "python"}
_LABELS = {"pytorch": "PyTorch", "jax": "JAX"}
_FRAMEWORK_RE = re.compile(r"(?P<name>[a-z]+)(?:==(?P<version>[0-9][0-9.]*))?")


@dataclass(frozen=True)
class TowerRequest:
    """What a team file says about one tower; None means "choose it from the GPUs"."""

    gpus: tuple[str, ...] = ()
    os: str = ""
    channel: str = "distro"
    branch: str | None = None
    flavour: str | None = None
    cuda: str | None = None
    frameworks: tuple[str, ...] = ("pytorch",)  # "pytorch", "jax", or pinned: "pytorch==2.6.0"
    python: str | None = None  # None: the release's python3
    path: str = ""  # prefix for problem fields, e.g. "towers[0]"


@dataclass(frozen=True)
class FrameworkPin:
    """One framework build to install: pip requirement lines and the index that has them."""

    framework: str
    version: str
    requirements: tuple[str, ...]
    index_url: str  # "" = PyPI
    variant: str  # "cu128", "cuda12"
    cuda: str  # the CUDA runtime the wheel brings


@dataclass(frozen=True)
class InstallPlan:
    """What to install on a tower; every value satisfies every rule of the matrix."""

    os: str
    python: str
    channel: str
    driver_branch: str
    kernel_modules: str  # "open" | "proprietary"
    open_unsupported_gpus_param: bool  # write options nvidia NVreg_OpenRmEnableUnsupportedGpus=1
    cuda_toolkit: str
    frameworks: tuple[FrameworkPin, ...]
    gpus: tuple[str, ...]  # the matrix's model names, in request order
    signed_modules: str  # distro channel: Canonical's precompiled signed modules "yes" | "no" | "unknown"
    chosen: tuple[str, ...]  # fields the request left out and the plan filled in
    notes: tuple[str, ...]  # why a choice was made, and what only works with care

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True)
class Refusal:
    """Why no plan fits, one problem per thing to change; each names its field and the fix."""

    problems: tuple[InputProblem, ...]

    @property
    def ok(self) -> bool:
        return False

    def render(self, file: str) -> str:
        return "\n".join(problem.render(file) for problem in self.problems)


Decision = InstallPlan | Refusal


@dataclass(frozen=True)
class _Ask:
    """A request whose every value has been read and found in the matrix."""

    path: str
    gpus: tuple[Gpu, ...]
    release: Release
    channel: str
    branch: int | None
    flavour: str | None
    cuda: Version | None
    frameworks: tuple[tuple[str, str | None], ...]  # (framework, pinned version or None)
    framework_items: tuple[str, ...]  # as the user wrote them, for fixes that rewrite the list
    python: Version
    python_given: bool

    def field(self, name: str) -> str:
        return f"{self.path}.{FIELDS[name]}" if self.path else FIELDS[name]

    def unique_gpus(self) -> list[Gpu]:
        seen: dict[str, Gpu] = {}
        for gpu in self.gpus:
            seen.setdefault(gpu.model, gpu)
        return list(seen.values())


def decide(request: TowerRequest, matrix: Matrix | None = None) -> Decision:
    """The install plan for a tower, or a refusal listing each problem with its field and fix."""
    m = matrix or load_matrix()
    ask, problems = _read(request, m)
    if ask is None:
        return Refusal(tuple(problems))
    return _solve(ask, m)


# ------------------------------------------------------------------ reading the request


def _prefix(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _did_you_mean(value: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"Did you mean {close[0]!r}? " if close else ""


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _read_gpus(request: TowerRequest, m: Matrix, problems: list[InputProblem]) -> tuple[Gpu, ...]:
    gpus = []
    for index, raw in enumerate(request.gpus or ()):
        name = _text(raw)
        gpu = m.gpu(name) if name.strip() else None
        if gpu is None:
            problems.append(InputProblem(
                _prefix(request.path, f"gpus[{index}].model"),
                f"{shown(name)} is not a GPU model the compatibility matrix knows.",
                f"{_did_you_mean(name, m.gpu_models())}Use a model from nomadrig/compat/data/gpus.csv "
                f"({', '.join(m.gpu_models()[:6])}, ...), or add the GPU there with its source."))
        else:
            gpus.append(gpu)
    return tuple(gpus)


def _read_release(request: TowerRequest, m: Matrix, problems: list[InputProblem]) -> Release | None:
    release = m.releases.get(_text(request.os))
    if release is None:
        problems.append(InputProblem(_prefix(request.path, FIELDS["os"]),
                                     f"{shown(request.os)} is not a release the compatibility matrix covers.",
                                     f"Use one of: {', '.join(m.releases)}."))
    return release


def _read_choice(request: TowerRequest, key: str, allowed: tuple[str, ...], problems: list[InputProblem],
                 optional: bool) -> str | None:
    value = getattr(request, key)
    if value is None and optional:
        return None
    if value in allowed:
        return value
    left_out = " (or leave it out to let nomadrig choose)" if optional else ""
    problems.append(InputProblem(_prefix(request.path, FIELDS[key]), f"{shown(value)} is not a {FIELDS[key]}.",
                                 f"Use one of: {', '.join(allowed)}{left_out}."))
    return None


def _read_branch(request: TowerRequest, m: Matrix, problems: list[InputProblem]) -> int | None:
    if request.branch is None:
        return None
    text = _text(request.branch)
    known = ", ".join(f'"{b}"' for b in sorted(m.branches))
    if not re.fullmatch(r"\d{3}", text):
        problems.append(InputProblem(_prefix(request.path, FIELDS["branch"]),
                                     f"{shown(text)} is not an NVIDIA driver branch.",
                                     f'Write three digits in quotes, e.g. driver_branch: "580"; known: {known}.'))
        return None
    if int(text) not in m.branches:
        problems.append(InputProblem(_prefix(request.path, FIELDS["branch"]),
                                     f"driver branch {text} is not in the compatibility matrix.",
                                     f"Use one of: {known}, or add the branch to nomadrig/compat/data/branches.csv "
                                     "with its source."))
        return None
    return int(text)


def _read_cuda(request: TowerRequest, m: Matrix, problems: list[InputProblem]) -> Version | None:
    if request.cuda is None:
        return None
    version = parse_version(_text(request.cuda))
    if version is None or version not in m.toolkits():
        known = ", ".join(f'"{fmt(v)}"' for v in m.toolkits())
        problems.append(InputProblem(_prefix(request.path, FIELDS["cuda"]),
                                     f"{shown(request.cuda)} is not a CUDA toolkit version the matrix knows.",
                                     f"Use one of: {known} (or leave cuda_version out)."))
        return None
    return version


def _read_python(request: TowerRequest, release: Release | None, problems: list[InputProblem]) -> Version | None:
    if request.python is None:
        return release.python if release else None
    version = parse_version(_text(request.python))
    if version is None or version[0] != 3:
        problems.append(InputProblem(_prefix(request.path, FIELDS["python"]),
                                     f"{shown(request.python)} is not a Python 3 version.",
                                     'Write major.minor in quotes, e.g. python: "3.12", or leave it out for the '
                                     "release's python3."))
        return None
    return version


def _read_frameworks(request: TowerRequest, m: Matrix,
                     problems: list[InputProblem]) -> tuple[tuple[str, str | None], ...]:
    wanted: list[tuple[str, str | None]] = []
    for index, raw in enumerate(request.frameworks or ()):
        text = _text(raw).strip()
        match = _FRAMEWORK_RE.fullmatch(text)
        field = _prefix(request.path, f"frameworks[{index}]")
        if match is None or match["name"] not in FRAMEWORKS:
            problems.append(InputProblem(field, f"{shown(text)} is not a framework nomadrig installs.",
                                         f"Use {' or '.join(FRAMEWORKS)}, optionally pinned like \"pytorch==2.9.1\"."))
            continue
        name, version = match["name"], match["version"]
        versions = sorted({w.version for w in m.wheels_for(name)}, key=release_key)
        if version is not None and version not in versions:
            problems.append(InputProblem(field, f"{_LABELS[name]} {version} is not in the compatibility matrix.",
                                         f"Pin one of: {', '.join(f'{name}=={v}' for v in versions)}, or write "
                                         f"\"{name}\" to let nomadrig choose."))
            continue
        earlier = next((v for n, v in wanted if n == name), False)
        if earlier is False:
            wanted.append((name, version))
        elif earlier != version:
            first = name if earlier is None else f"{name}=={earlier}"
            problems.append(InputProblem(field, f"{_LABELS[name]} is listed twice: {shown(first)} and {shown(text)}; "
                                         "one environment holds one version.", f"Keep one of {first!r} and "
                                         f"{text!r}."))
    return tuple(wanted)


def _read(request: TowerRequest, m: Matrix) -> tuple[_Ask | None, list[InputProblem]]:
    """Every value of the request looked up in the matrix; problems for those that are not there."""
    problems: list[InputProblem] = []
    gpus = _read_gpus(request, m, problems)
    release = _read_release(request, m, problems)
    channel = _read_choice(request, "channel", CHANNELS, problems, optional=False)
    flavour = _read_choice(request, "flavour", FLAVOURS, problems, optional=True)
    branch = _read_branch(request, m, problems)
    cuda = _read_cuda(request, m, problems)
    python = _read_python(request, release, problems)
    frameworks = _read_frameworks(request, m, problems)
    if release is not None and channel == "cuda_repo" and release.cuda_repo is None:
        problems.append(InputProblem(_prefix(request.path, FIELDS["channel"]),
                                     f"NVIDIA publishes no CUDA repository for {release.title} that the matrix knows.",
                                     "set driver_channel: distro"))
    if problems or release is None or channel is None or python is None:
        return None, problems
    return _Ask(path=request.path, gpus=gpus, release=release, channel=channel, branch=branch, flavour=flavour,
                cuda=cuda, frameworks=frameworks, framework_items=tuple(_text(f) for f in request.frameworks or ()),
                python=python, python_given=request.python is not None), []


# ------------------------------------------------------------------ the rules, as predicates


def _past_eol(m: Matrix, branch: int) -> bool:
    eol = m.branches[branch].eol
    return bool(eol) and eol < m.as_of[:7]


def _repo_order(m: Matrix) -> list[int]:
    """NVIDIA's CUDA repository: supported (LTS/production, not past end of life) branches first, newest first."""
    newest_first = sorted(m.branches, reverse=True)
    supported = [b for b in newest_first if m.branches[b].support and not _past_eol(m, b)]
    return supported + [b for b in newest_first if b not in supported]


def _archive_branches(release: Release, m: Matrix) -> list[int]:
    return sorted((d.branch for d in m.distro_branches(release.name) if d.status == "current"), reverse=True)


def _channel_branches(ask: _Ask, m: Matrix) -> list[int]:
    return _archive_branches(ask.release, m) if ask.channel == "distro" else _repo_order(m)


def _archive_row(m: Matrix, release: Release, branch: int) -> DistroDriver | None:
    """The release archive's installable row for a branch, if it has one."""
    rows = [d for d in m.distro_branches(release.name) if d.branch == branch and d.status == "current"]
    return rows[0] if rows else None


def _flavour_allowed(gpu: Gpu, flavour: str) -> bool:
    if flavour == "open":
        return gpu.open_modules != "unsupported"
    return gpu.open_modules != "required"


def _in_range(ask: _Ask, branch: int) -> bool:
    """Whether a branch lies between every GPU's first and last branch."""
    return all(g.min_branch <= branch and (g.max_branch is None or branch <= g.max_branch) for g in ask.gpus)


def _branch_serves(ask: _Ask, m: Matrix, branch: int, flavours: Iterable[str]) -> bool:
    """Whether a branch runs every GPU with one of the flavours, as far as the driver alone decides."""
    return _in_range(ask, branch) and any(_flavour_serves(ask, m, branch, f) for f in flavours)


def _flavour_serves(ask: _Ask, m: Matrix, branch: int, flavour: str) -> bool:
    if flavour == "open" and m.branches[branch].open_modules == "none":
        return False
    if ask.channel == "distro":
        row = _archive_row(m, ask.release, branch)
        if row is None or flavour not in row.flavours:
            return False
    return all(_flavour_allowed(g, flavour) for g in ask.gpus)


def _wanted_flavours(ask: _Ask) -> tuple[str, ...]:
    return (ask.flavour,) if ask.flavour else FLAVOURS


def _wheel_reasons(ask: _Ask, wheel: Wheel, branch: int, python: Version) -> list[str]:
    """Why a wheel cannot serve this tower; empty when it can."""
    reasons = []
    if not wheel.python_min <= python <= wheel.python_max:
        reasons.append(f"{wheel.release} publishes wheels for Python {fmt(wheel.python_min)} to "
                       f"{fmt(wheel.python_max)}, not {fmt(python)}")
    if wheel.min_driver_branch > branch:
        reasons.append(f"{wheel.name} brings the CUDA {fmt(wheel.cuda)} runtime, which needs driver branch "
                       f"{wheel.min_driver_branch} or newer (CUDA release notes, Table 3); branch {branch} is older")
    for gpu in ask.unique_gpus():
        if not wheel.runs_on(gpu.compute_capability):
            reasons.append(f"{wheel.name} has no kernels for {gpu.describe()}")
        elif wheel.cuda < gpu.first_cuda:
            reasons.append(f"{wheel.name}'s CUDA {fmt(wheel.cuda)} runtime predates {gpu.model}, "
                           f"first supported by CUDA {fmt(gpu.first_cuda)}")
        elif gpu.max_cuda is not None and wheel.cuda > gpu.max_cuda:
            reasons.append(f"{wheel.name}'s CUDA {fmt(wheel.cuda)} runtime no longer supports {gpu.model}")
    return reasons


def _pick_wheel(ask: _Ask, m: Matrix, framework: str, version: str | None, branch: int, python: Version,
                toolkit: Version | None) -> Wheel | None:
    """The best fitting wheel: same CUDA major as the toolkit (so extensions build), newest, newest CUDA."""
    fitting = [w for w in m.wheels_for(framework)
               if (version is None or w.version == version) and not _wheel_reasons(ask, w, branch, python)]
    if not fitting:
        return None
    return max(fitting, key=lambda w: (toolkit is not None and w.cuda[0] == toolkit[0], release_key(w.version),
                                       w.cuda))


# ------------------------------------------------------------------ choosing


def _flavour_conflict(ask: _Ask) -> InputProblem | None:
    """A proprietary-only GPU and an open-only GPU in one tower: no flavour loads both."""
    if ask.flavour is not None:
        return None
    old = [g for g in ask.unique_gpus() if g.open_modules == "unsupported"]
    new = [g for g in ask.unique_gpus() if g.open_modules == "required"]
    if not (old and new):
        return None
    return InputProblem(
        ask.field("gpus"),
        f"{old[0].describe()} needs the proprietary kernel modules (the open ones need the GSP, Turing and newer) "
        f"and {new[0].describe()} needs the open ones (NVIDIA supports only open modules on Blackwell); one "
        "driver cannot load both.",
        f"Put {old[0].model} and {new[0].model} in separate towers.")


def _branch_candidates(ask: _Ask, m: Matrix) -> list[int] | InputProblem:
    offered = _channel_branches(ask, m)
    if ask.branch is None:
        if offered:
            return offered
        return InputProblem(ask.field("channel"), f"{ask.release.title}'s archive has no current NVIDIA driver branch.",
                            "set driver_channel: cuda_repo")
    if ask.channel == "distro" and ask.branch not in offered:
        return _branch_not_in_archive(ask, m, offered)
    return [ask.branch]


def _branch_not_in_archive(ask: _Ask, m: Matrix, offered: list[int]) -> InputProblem:
    rows = [d for d in m.distro_branches(ask.release.name) if d.branch == ask.branch]
    if rows and rows[0].status == "transitional":
        message = (f"{ask.release.title}'s nvidia packages for branch {ask.branch} are transitional: they install "
                   f"branch {rows[0].replaced_by} ({rows[0].source}).")
    else:
        message = (f"{ask.release.title}'s archive has no driver branch {ask.branch}; it offers "
                   f"{_listing(offered)}.")
    serving = [b for b in offered if _branch_serves(ask, m, b, _wanted_flavours(ask))]
    fixes = [f'driver_branch: "{serving[0]}"'] if serving else []
    if ask.release.cuda_repo or not fixes:
        fixes.append(f"driver_channel: cuda_repo to keep branch {ask.branch}")
    return InputProblem(ask.field("branch"), message, "set " + ", or ".join(fixes))


def _listing(branches: Iterable[int]) -> str:
    items = [str(b) for b in branches]
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + f" and {items[-1]}"


def _flavour_order(ask: _Ask, m: Matrix, branch: int) -> list[str]:
    """The request's flavour, else what NVIDIA recommends for these GPUs on this branch."""
    if ask.flavour:
        return [ask.flavour]
    if any(g.open_modules == "unsupported" for g in ask.gpus):
        return ["proprietary"]
    if any(g.open_modules == "required" for g in ask.gpus):
        return ["open"]
    level = m.branches[branch].open_modules
    if level == "production" or (level != "none" and all(g.segment == "datacenter" for g in ask.gpus)):
        return ["open", "proprietary"]
    return ["proprietary", "open"]


def _toolkit_order(ask: _Ask, m: Matrix, branch: int) -> list[Version]:
    """The archive's toolkit; on NVIDIA's repository the request's, else the newest the branch and GPUs allow."""
    if ask.channel == "distro":
        return [ask.release.toolkit]
    if ask.cuda:
        return [ask.cuda]
    caps = [g.max_cuda for g in ask.gpus if g.max_cuda is not None]
    fits = [v for v in reversed(m.toolkits()) if m.cuda[v].branch <= branch and all(v <= c for c in caps)]
    targets_all = [v for v in fits if all(v >= g.first_cuda for g in ask.gpus)]
    return targets_all + [v for v in fits if v not in targets_all] or [m.toolkits()[0]]


def _solve(ask: _Ask, m: Matrix) -> Decision:
    """Try the candidates in order of preference; the first that passes every rule is the plan."""
    conflict = _flavour_conflict(ask)
    if conflict:
        return Refusal((conflict,))
    branches = _branch_candidates(ask, m)
    if isinstance(branches, InputProblem):
        return Refusal((branches,))
    best: tuple[tuple[int, int], list[InputProblem]] | None = None
    for branch in branches:
        for flavour in _flavour_order(ask, m, branch):
            for toolkit in _toolkit_order(ask, m, branch):
                stage, problems, pins = _evaluate(ask, m, branch, flavour, toolkit)
                if not problems:
                    return _plan(ask, m, branch, flavour, toolkit, pins)
                score = (stage, -len(problems))
                if best is None or score > best[0]:
                    best = (score, problems)
    return Refusal(tuple(best[1]))


def _evaluate(ask: _Ask, m: Matrix, branch: int, flavour: str,
              toolkit: Version) -> tuple[int, list[InputProblem], tuple[Wheel, ...]]:
    """Problems of one candidate, from the first stage that has any: 1 driver, 2 toolkit, 3 wheels."""
    problems = _driver_problems(ask, m, branch, flavour)
    if problems:
        return 1, problems, ()
    problems = _toolkit_problems(ask, m, branch, toolkit)
    if problems:
        return 2, problems, ()
    wheels: list[Wheel] = []
    for index, (framework, version) in enumerate(ask.frameworks):
        wheel = _pick_wheel(ask, m, framework, version, branch, ask.python, toolkit)
        if wheel is None:
            problems.append(_no_wheel(ask, m, index, framework, version, branch, flavour, toolkit))
        else:
            wheels.append(wheel)
    return (3, problems, ()) if problems else (4, [], tuple(wheels))


# ------------------------------------------------------------------ problems and their fixes


def _phrase(ask: _Ask, branch: int) -> str:
    """How a message names the branch: the user's, the archive's, or the one tried."""
    if ask.branch is not None:
        return f"driver_branch {branch}"
    if ask.channel == "distro":
        return f"{ask.release.title}'s archive branch {branch}"
    return f"branch {branch}"


def _branch_remedy(ask: _Ask, m: Matrix, serves: Callable[[int], bool]) -> tuple[str, str]:
    """(field, fix) for a branch that cannot serve: another branch of the channel, else NVIDIA's repository."""
    for branch in _channel_branches(ask, m):
        if serves(branch):
            return ask.field("branch"), f'set driver_branch: "{branch}"'
    if ask.channel == "distro" and ask.release.cuda_repo:
        for branch in _repo_order(m):
            if serves(branch):
                offered = _listing(_archive_branches(ask.release, m))
                return (ask.field("channel"), f'set driver_channel: cuda_repo and driver_branch: "{branch}" '
                        f"({ask.release.title}'s archive offers only branch {offered})")
    return ask.field("gpus"), "No NVIDIA driver branch serves all of these GPUs; put them in separate towers."


def _driver_problems(ask: _Ask, m: Matrix, branch: int, flavour: str) -> list[InputProblem]:
    problems = []
    for gpu in ask.unique_gpus():
        if branch < gpu.min_branch or (gpu.max_branch is not None and branch > gpu.max_branch):
            # Only the range here: a flavour that no branch can fix is its own problem below.
            field, fix = _branch_remedy(ask, m, lambda b: _in_range(ask, b))
            problems.append(InputProblem(field, _branch_range_message(ask, m, gpu, branch), fix))
        if not _flavour_allowed(gpu, flavour):
            problems.append(_flavour_problem(ask, gpu, flavour))
    if flavour == "open" and m.branches[branch].open_modules == "none":
        problems.append(InputProblem(ask.field("flavour"), f"driver branch {branch} has no open kernel modules: "
                                     "NVIDIA ships them from the 515 series (NVIDIA driver README, Open Linux Kernel "
                                     "Modules).", "set kernel_modules: proprietary"))
    return problems


def _branch_range_message(ask: _Ask, m: Matrix, gpu: Gpu, branch: int) -> str:
    if branch < gpu.min_branch:
        first = m.cuda[gpu.first_cuda]
        return (f"{gpu.describe()} needs driver branch {gpu.min_branch} or newer: CUDA {fmt(gpu.first_cuda)} is the "
                f"first toolkit for it and needs driver {first.min_driver} (CUDA release notes, Table 3); "
                f"{_phrase(ask, branch)} is older.")
    return (f"{gpu.describe()}: NVIDIA's {gpu.max_branch} series is the last driver branch for "
            f"{gpu.architecture.title()} GPUs (NVIDIA Unix driver deprecation schedule); {_phrase(ask, branch)} is "
            "newer.")


def _flavour_problem(ask: _Ask, gpu: Gpu, flavour: str) -> InputProblem:
    needed = "proprietary" if flavour == "open" else "open"
    if flavour == "open":
        why = (f"{gpu.describe()} cannot load the open kernel modules: they need the GSP, which NVIDIA GPUs have from "
               "Turing on (NVIDIA driver README, Open Linux Kernel Modules).")
    else:
        why = (f"{gpu.describe()} needs the open kernel modules: NVIDIA does not support the proprietary ones on "
               "Blackwell (NVIDIA technical blog on the transition to open GPU kernel modules, R560).")
    others = [g for g in ask.unique_gpus() if not _flavour_allowed(g, needed)]
    if others:
        return InputProblem(ask.field("gpus"), why, f"No kernel-module flavour serves both {gpu.model} and "
                            f"{others[0].model}; put them in separate towers.")
    return InputProblem(ask.field("flavour"), why, f"set kernel_modules: {needed}")


def _toolkit_problems(ask: _Ask, m: Matrix, branch: int, toolkit: Version) -> list[InputProblem]:
    if ask.channel == "distro" and ask.cuda is not None and ask.cuda != toolkit:
        return [_archive_toolkit_problem(ask, m)]
    problems = []
    need = m.cuda[toolkit]
    if need.branch > branch:
        problems.append(_toolkit_driver_problem(ask, m, branch, toolkit))
    for gpu in ask.unique_gpus():
        if gpu.max_cuda is not None and toolkit > gpu.max_cuda:
            best = min(gpu.max_cuda, m.max_cuda(branch) or gpu.max_cuda)
            problems.append(InputProblem(
                ask.field("cuda"),
                f"CUDA {fmt(toolkit)} cannot build for {gpu.describe()}: CUDA 13.0 removed offline compilation and "
                f"library support for Maxwell, Pascal and Volta (CUDA 13.0 release notes, Deprecated "
                "Architectures).",
                f'set cuda_version: "{fmt(best)}"'))
    return problems


def _archive_toolkit_problem(ask: _Ask, m: Matrix) -> InputProblem:
    release = ask.release
    fix = f'set cuda_version: "{fmt(release.toolkit)}"'
    repo = replace(ask, channel="cuda_repo", branch=None)
    if release.cuda_repo and any(_toolkit_fits(repo, m, b, ask.cuda) for b in _repo_order(m)):
        fix += f", or driver_channel: cuda_repo for CUDA {fmt(ask.cuda)}"
    return InputProblem(ask.field("cuda"),
                        f"{release.title}'s archive ships CUDA toolkit {fmt(release.toolkit)} "
                        f"({release.toolkit_package}), not {fmt(ask.cuda)}; framework wheels bring their own CUDA "
                        "runtime, the toolkit is only for nvcc.", fix)


def _toolkit_fits(ask: _Ask, m: Matrix, branch: int, toolkit: Version) -> bool:
    return (_branch_serves(ask, m, branch, _wanted_flavours(ask)) and m.cuda[toolkit].branch <= branch
            and all(g.max_cuda is None or toolkit <= g.max_cuda for g in ask.gpus))


def _toolkit_driver_problem(ask: _Ask, m: Matrix, branch: int, toolkit: Version) -> InputProblem:
    need = m.cuda[toolkit]
    top = m.max_cuda(branch)
    caps = [g.max_cuda for g in ask.gpus if g.max_cuda is not None]
    fixes = [f'driver_branch: "{b}"' for b in _channel_branches(ask, m) if _toolkit_fits(ask, m, b, toolkit)][:1]
    if top is not None:
        fixes.append(f'cuda_version: "{fmt(min([top, *caps]))}"')
    running = f"runs CUDA up to {fmt(top)}" if top else "runs no CUDA toolkit the matrix lists"
    return InputProblem(ask.field("cuda"),
                        f"CUDA {fmt(toolkit)} needs driver {need.min_driver} or newer (CUDA release notes, Table 3); "
                        f"{_phrase(ask, branch)} {running}.",
                        "set " + ", or ".join(fixes) if fixes else "set driver_channel: cuda_repo")


def _no_wheel(ask: _Ask, m: Matrix, index: int, framework: str, version: str | None, branch: int, flavour: str,
              toolkit: Version) -> InputProblem:
    label = _LABELS[framework] + (f" {version}" if version else "")
    pool = [w for w in m.wheels_for(framework) if version is None or w.version == version]
    reasons: list[str] = []
    for wheel in pool:
        for reason in _wheel_reasons(ask, wheel, branch, ask.python):
            if reason not in reasons:
                reasons.append(reason)
    shown_reasons = "; ".join(reasons[:4]) + ("; ..." if len(reasons) > 4 else "")
    message = f"no {label} wheel fits this tower: {shown_reasons}."
    return InputProblem(_prefix(ask.path, f"frameworks[{index}]"), message,
                        _wheel_fix(ask, m, index, framework, version, branch, flavour, toolkit))


def _wheel_fix(ask: _Ask, m: Matrix, index: int, framework: str, version: str | None, branch: int, flavour: str,
               toolkit: Version) -> str:
    """Another version that fits, else a branch or a Python that a build exists for, else drop the framework."""
    other = _pick_wheel(ask, m, framework, None, branch, ask.python, toolkit)
    if version is not None and other is not None:
        items = list(ask.framework_items)
        items[index] = f"{framework}=={other.version}"
        return "set frameworks: [" + ", ".join(f'"{item}"' for item in items) + "]"
    for candidate in _channel_branches(ask, m):
        if candidate != branch and _branch_serves(ask, m, candidate, _wanted_flavours(ask)) and \
                _pick_wheel(ask, m, framework, version, candidate, ask.python, None):
            return f'set driver_branch: "{candidate}"'
    pythons = sorted({v for w in m.wheels_for(framework) for v in (w.python_min, w.python_max)}, reverse=True)
    for python in pythons:
        if _pick_wheel(ask, m, framework, version, branch, python, toolkit):
            return (f'set python: "{fmt(python)}" ({ask.release.title}\'s python3 is {fmt(ask.release.python)}), '
                    f"or pin another {_LABELS[framework]} version")
    return f"remove {shown(ask.framework_items[index])} from frameworks: no {_LABELS[framework]} build in the " \
           "matrix serves these GPUs on this branch."


# ------------------------------------------------------------------ the plan


def _plan(ask: _Ask, m: Matrix, branch: int, flavour: str, toolkit: Version,
          wheels: tuple[Wheel, ...]) -> InstallPlan:
    level = m.branches[branch].open_modules
    consumer = [g.model for g in ask.unique_gpus() if g.segment != "datacenter"]
    needs_param = flavour == "open" and level == "datacenter" and bool(consumer)
    row = _archive_row(m, ask.release, branch)
    signed = row.signed_modules if ask.channel == "distro" and row else "unknown"
    chosen = [FIELDS[key] for key, given in (("branch", ask.branch), ("flavour", ask.flavour), ("cuda", ask.cuda))
              if given is None]
    if not ask.python_given:
        chosen.append(FIELDS["python"])
    if any(version is None for _, version in ask.frameworks):
        chosen.append(FIELDS["frameworks"])
    return InstallPlan(
        os=ask.release.name, python=fmt(ask.python), channel=ask.channel, driver_branch=str(branch),
        kernel_modules=flavour, open_unsupported_gpus_param=needs_param, cuda_toolkit=fmt(toolkit),
        frameworks=tuple(FrameworkPin(framework=w.framework, version=w.version, requirements=w.requirements,
                                      index_url=w.index_url, variant=w.variant, cuda=fmt(w.cuda)) for w in wheels),
        gpus=tuple(g.model for g in ask.gpus), signed_modules=signed, chosen=tuple(chosen),
        notes=tuple(_notes(ask, m, branch, toolkit, needs_param, consumer, signed)))


def _notes(ask: _Ask, m: Matrix, branch: int, toolkit: Version, needs_param: bool, consumer: list[str],
           signed: str) -> list[str]:
    notes = []
    if needs_param:
        notes.append(f"open kernel modules on branch {branch} load on {', '.join(consumer)} only with "
                     "NVreg_OpenRmEnableUnsupportedGpus=1 (GeForce and workstation support is alpha before 545: "
                     "NVIDIA driver README, Open Linux Kernel Modules); the plan sets it.")
    for gpu in ask.unique_gpus():
        if gpu.first_cuda > toolkit:
            notes.append(f"nvcc from CUDA {fmt(toolkit)} cannot compile for {gpu.describe()} (CUDA "
                         f"{fmt(gpu.first_cuda)} is the first that can); the framework wheels bring their own CUDA "
                         "runtime, so only hand-built CUDA code is affected.")
    if _past_eol(m, branch):
        notes.append(f"driver branch {branch} reached end of life in {m.branches[branch].eol} (NVIDIA data-center "
                     "driver lifecycle).")
    if ask.python != ask.release.python:
        notes.append(f"Python {fmt(ask.python)} is not {ask.release.title}'s python3 ({fmt(ask.release.python)}).")
    if signed == "yes":
        notes.append(f"{ask.release.title} ships Canonical's precompiled signed modules for branch {branch} "
                     f"(linux-modules-nvidia-{branch}-<kernel flavour>); prefer them where Secure Boot is on.")
    if not ask.gpus:
        notes.append("no GPUs declared: the plan is not checked against hardware.")
    return notes
