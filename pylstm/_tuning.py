"""What pylstm knows of the CPU it runs on, and the sizes it derives from it.

`machine()` describes the CPU: what CPUID says it is and its data caches (x86-64), or the
caches Linux reports (`/sys/devices/system/cpu/cpu0/cache`, other architectures). `TUNING` holds
the sizes `pylstm._plan` derives from the cache sizes, or a default where the CPU reports
none (then `TUNING.basis` says so). The kernels' own tile sizes come with the kernel level
(`pylstm._levels`): the vector width of its instruction set.

`TUNING.chunk_bytes`: chunked inference writes the gates of a chunk of steps with one GEMM
and reads them in the time loop while they are in the core's L2: one L2's worth
(benchmarks/README.md, "Route measurements").

Only sizes that change nothing but speed are derived. Where the choice changes the
arithmetic (the backward's team or BLAS GEMMs adding the weight gradients, the packed
kernel or BLAS), `pylstm._plan` keeps its measured constants: results must not depend on the
cache sizes a machine reports (a hybrid CPU reports different ones on its two kinds of
core), only on the kernel level.

The thread team's size thresholds (`pylstm._plan.team_size`) scale with `team_scale(n)`: a
team pays where splitting a step saves more than its barrier costs, so the FLOPs a step needs
grow with the product of one core's FLOP rate and a barrier's time, both measured once per
process and team size by a short run (`team_calibration`, about a millisecond), against
their product on the machine where the thresholds were measured.
"""

import os
import platform
import threading
from typing import NamedTuple

from pylstm import _cpu, _kernels

# Where the CPU reports no L2 (some virtual machines, unknown architectures): the L2 of the
# machine the rules were measured on (benchmarks/README.md, the AMD EPYC).
DEFAULT_L2_BYTES = 1 << 20

# The L2 sizes of a core that CPUs have had (a reported size outside is taken as the nearest
# end: a hypervisor can report anything).
L2_RANGE = (128 << 10, 8 << 20)

_SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"


def _sysfs_caches(root=_SYSFS_CACHE):
    """`{level: (bytes, cpus sharing it)}` of cpu0's data and unified caches as Linux lists
    them (`index*/level`, `type`, `size` such as "1024K", `shared_cpu_list`); empty where
    there is no such directory or it says nothing usable."""
    caches = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return caches
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            fields = {}
            for name in ("level", "type", "size", "shared_cpu_list"):
                with open(os.path.join(root, entry, name), encoding="ascii") as f:
                    fields[name] = f.read(64).strip()
            if fields["type"] == "Instruction":
                continue
            level = int(fields["level"])
            size = fields["size"]
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
            size_bytes = int(size.rstrip("KMG")) * scale
            shared = sum(int(b) - int(a) + 1 if b else 1
                         for a, _, b in (part.partition("-")
                                         for part in fields["shared_cpu_list"].split(",")))
        except (OSError, ValueError):
            continue
        if 1 <= level <= 3 and size_bytes > 0:
            caches[level] = (size_bytes, shared)
    return caches


def _describe():
    identity = _cpu.identity()
    caches = _cpu.caches()
    source = "CPUID"
    if not caches:
        caches = _sysfs_caches()
        source = "Linux sysfs" if caches else None

    def size(level):
        return caches[level][0] if level in caches else None

    return {
        "model_name": identity["brand"] or platform.processor() or None,
        "vendor": identity["vendor"] or None,
        "family": identity["family"] or None,
        "model": identity["model"] or None,
        "l1d_bytes": size(1),
        "l2_bytes": size(2),
        "l3_bytes": size(3),
        "caches_from": source,
        "cpus": os.cpu_count(),
    }


_MACHINE = _describe()


def machine():
    """The CPU, as a dict: `model_name` (CPUID's brand string, else `platform.processor()`),
    `vendor`, `family`, `model` (CPUID's display family and model; None off x86-64),
    `l1d_bytes`, `l2_bytes`, `l3_bytes` (the size of one cache of each level: a core's L1
    data cache and L2, the L3 its cores share; None where not reported), `caches_from`
    ("CPUID", "Linux sysfs" or None) and `cpus` (`os.cpu_count()`)."""
    return dict(_MACHINE)


def family_name(described):
    """One line naming the CPU of a `machine()` dict: vendor, family and model, brand."""
    parts = []
    if described["vendor"]:
        parts.append(f"{described['vendor']} family {described['family']} "
                     f"model {described['model']}")
    if described["model_name"]:
        parts.append(described["model_name"])
    return ": ".join(parts) or "unknown CPU"


class Tuning(NamedTuple):
    """The sizes derived from the CPU (see the module docstring).

    Attributes:
        chunk_bytes: bytes of gates a chunk of chunked inference holds.
        basis: what they were derived from, in words.
    """

    chunk_bytes: int
    basis: str


def derive(described):
    """The `Tuning` for a `machine()` dict."""
    l2 = described["l2_bytes"]
    if l2 and not L2_RANGE[0] <= l2 <= L2_RANGE[1]:
        basis = (f"an L2 of {l2 >> 10} KiB reported by {family_name(described)}, taken as "
                 f"the nearest of {L2_RANGE[0] >> 10} KiB to {L2_RANGE[1] >> 20} MiB")
        l2 = min(max(l2, L2_RANGE[0]), L2_RANGE[1])
    elif l2:
        basis = f"L2 of {l2 >> 10} KiB ({described['caches_from']}) on {family_name(described)}"
    else:
        l2 = DEFAULT_L2_BYTES
        basis = (f"no L2 size reported by {family_name(described)}: the default "
                 f"{l2 >> 10} KiB")
    return Tuning(chunk_bytes=l2, basis=basis)


TUNING = derive(_MACHINE)


# The packed product's FLOP per ns on one thread and a 2-member barrier's ns, as
# `team_calibration` measured them on the machine the team thresholds of `pylstm._plan` were
# measured on (benchmarks/README.md, "Thread policy measurements": the AMD EPYC).
REFERENCE_FLOP_PER_NS = 115.0
REFERENCE_BARRIER_NS = 90.0
# A measured scale is taken within these (a calibration on a machine busy with other work
# measures that load, which a later call may not see).
TEAM_SCALE_RANGE = (0.25, 4.0)

_team_scales = {}
_team_measures = {}
_team_lock = threading.Lock()


def team_calibration(nt):
    """`(flop_per_ns, barrier_ns, team)` measured now for teams of `nt` (see
    `pylstm._core.team_calibration`)."""
    return _kernels.core.team_calibration(nt)


def team_scale(nt):
    """The factor `pylstm._plan`'s team thresholds take for teams of `nt` threads on this
    machine: (FLOP rate x barrier time) / that of the reference machine, within
    `TEAM_SCALE_RANGE`; measured at the first call for each `nt`. 1.0 for one thread, and
    while the team could not be measured (another thread held it)."""
    if nt <= 1:
        return 1.0
    scale = _team_scales.get(nt)
    if scale is None:
        with _team_lock:
            scale = _team_scales.get(nt)
            if scale is None:
                flop_per_ns, barrier_ns, team = team_calibration(nt)
                if team < nt:
                    return 1.0
                ratio = (flop_per_ns * barrier_ns) / (REFERENCE_FLOP_PER_NS * REFERENCE_BARRIER_NS)
                scale = min(max(ratio, TEAM_SCALE_RANGE[0]), TEAM_SCALE_RANGE[1])
                _team_scales[nt] = scale
                _team_measures[nt] = {"flop_per_ns": round(flop_per_ns, 1),
                                      "barrier_ns": round(barrier_ns, 1),
                                      "scale": round(scale, 3)}
    return scale


def team_scales():
    """`{nt: {"flop_per_ns", "barrier_ns", "scale"}}`: what `team_scale` measured so far in
    this process, and the scale it took."""
    return {nt: dict(measured) for nt, measured in _team_measures.items()}
