"""What pylstm reads of the CPU (`pylstm._cpu.identity`, `caches`, `pylstm._tuning`) and the
sizes the plans derive from it: checked against what Linux reports of the same CPU, and the
rules on made-up machines."""

import os
import platform

import numpy as np
import pytest

import pylstm
from pylstm import _cpu, _plan, _tuning, ops
from pylstm._kernels import core as _core

X86_LINUX = platform.machine().lower() in ("x86_64", "amd64") and os.path.isdir(
    _tuning._SYSFS_CACHE)


def cpuinfo():
    """The first processor's fields of /proc/cpuinfo."""
    fields = {}
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


@pytest.mark.skipif(not X86_LINUX, reason="compares CPUID with Linux's view (x86-64 Linux)")
def test_cpuid_agrees_with_linux():
    info = cpuinfo()
    identity = _cpu.identity()
    assert identity["vendor"] == info["vendor_id"]
    assert identity["family"] == int(info["cpu family"])
    assert identity["model"] == int(info["model"])
    assert identity["brand"] == info["model name"]
    by_cpuid = _cpu.caches()
    by_linux = _tuning._sysfs_caches()
    assert set(by_cpuid) >= {1, 2}
    for level in (1, 2):     # the cores' own caches (Linux may list an L3 per cache domain)
        assert by_cpuid[level][0] == by_linux[level][0], (level, by_cpuid, by_linux)


def write_cache(root, index, level, kind, size, shared):
    directory = root / f"index{index}"
    directory.mkdir()
    for name, value in (("level", level), ("type", kind), ("size", size),
                        ("shared_cpu_list", shared)):
        (directory / name).write_text(f"{value}\n")


def test_sysfs_caches_are_read_as_linux_lists_them(tmp_path):
    write_cache(tmp_path, 0, 1, "Data", "48K", "0,32")
    write_cache(tmp_path, 1, 1, "Instruction", "32K", "0,32")
    write_cache(tmp_path, 2, 2, "Unified", "2048K", "0,32")
    write_cache(tmp_path, 3, 3, "Unified", "105M", "0-31,64-95")
    write_cache(tmp_path, 4, 4, "Unified", "junk", "0")       # unreadable: left out
    (tmp_path / "uevent").write_text("")
    assert _tuning._sysfs_caches(str(tmp_path)) == {
        1: (48 << 10, 2), 2: (2 << 20, 2), 3: (105 << 20, 64)}
    assert _tuning._sysfs_caches(str(tmp_path / "absent")) == {}


def described(l2):
    return {"model_name": "Test CPU", "vendor": "GenuineTest", "family": 6, "model": 143,
            "l1d_bytes": 48 << 10, "l2_bytes": l2, "l3_bytes": None,
            "caches_from": "CPUID", "cpus": 4}


@pytest.mark.parametrize("l2, chunk", [(2 << 20, 2 << 20), (512 << 10, 512 << 10),
                                       (None, _tuning.DEFAULT_L2_BYTES),
                                       (64 << 30, _tuning.L2_RANGE[1]),
                                       (1 << 10, _tuning.L2_RANGE[0])])
def test_sizes_follow_the_l2(l2, chunk):
    tuning = _tuning.derive(described(l2))
    assert tuning.chunk_bytes == chunk
    assert "GenuineTest family 6 model 143: Test CPU" in tuning.basis
    if l2 is None:
        assert "no L2 size" in tuning.basis


def test_the_plans_use_the_sizes_derived_for_this_cpu():
    machine = _tuning.machine()
    assert _tuning.TUNING == _tuning.derive(machine)
    assert _plan._CHUNK_BYTES == _tuning.TUNING.chunk_bytes
    H = 64     # 1 KiB of gates a row: a chunk holds one L2's worth of rows
    plan = ops.explain((4, 4096, 8), H, dropout=True)
    assert plan.route == _plan.CHUNKED_INFERENCE
    assert plan.chunk_rows == _tuning.TUNING.chunk_bytes // (4 * H * 4)


def test_show_config_names_the_cpu_and_the_tuning(capsys):
    config = pylstm.show_config(mode="dicts")
    assert config["cpu"] == _tuning.machine()
    tuning = config["tuning"]
    assert tuning["tuned_for"] == _tuning.family_name(_tuning.machine())
    assert tuning["basis"] == _tuning.TUNING.basis
    for name, value in _plan.parameters().items():
        assert tuning[name] == value
    assert tuning["vector_floats"] == _core.tile_sizes()["vector_floats"] in (4, 8, 16)
    pylstm.show_config()
    out = capsys.readouterr().out
    assert f"tuned_for: {tuning['tuned_for']}" in out
    assert f"chunk_bytes: {_tuning.TUNING.chunk_bytes}" in out


def test_chunks_of_the_derived_size_give_the_unchunked_bits():
    """Chunk sizes change only speed: the chunk an L2 of another CPU would give computes the
    same bits."""
    rng = np.random.default_rng(3)
    B, T, D, H = 4, 300, 8, 64
    args = dict(x=rng.standard_normal((B, T, D), dtype=np.float32),
                kernel=rng.uniform(-0.2, 0.2, (D, 4 * H)).astype(np.float32),
                recurrent_kernel=rng.uniform(-0.2, 0.2, (H, 4 * H)).astype(np.float32),
                bias=np.zeros(4 * H, np.float32),
                dropout_mask=(rng.random((B, D)) < 0.9).astype(np.float32))
    results = []
    for l2 in (128 << 10, 1 << 20, 2 << 20, 8 << 20):
        with _plan.forced(chunk_bytes=_tuning.derive(described(l2)).chunk_bytes):
            results.append(ops.lstm_forward(**args)[0])
    for y in results[1:]:
        np.testing.assert_array_equal(y, results[0])


def test_team_calibration_measures_a_rate_and_a_barrier():
    flop_per_ns, barrier_ns, team = _core.team_calibration(1)
    assert flop_per_ns > 0 and barrier_ns == 0 and team == 1
    flop_per_ns, barrier_ns, team = _core.team_calibration(2)
    assert flop_per_ns > 0 and team in (1, 2)
    assert (barrier_ns > 0) == (team == 2)
    with pytest.raises(ValueError, match="`nt`"):
        _core.team_calibration(0)


def test_team_scale_is_measured_once_per_team_size(monkeypatch):
    calls = []
    monkeypatch.setattr(_tuning, "_team_scales", {})
    monkeypatch.setattr(_tuning, "_team_measures", {})
    monkeypatch.setattr(_tuning, "team_calibration",
                        lambda nt: calls.append(nt) or {2: (230.0, 180.0, 2),
                                                        3: (1.0, 1.0, 3),
                                                        4: (115.0, 90.0, 1)}[nt])
    assert _tuning.team_scale(1) == 1.0
    assert _tuning.team_scale(2) == pytest.approx(4.0)     # 2 x the rate, 2 x the barrier
    assert _tuning.team_scale(2) == pytest.approx(4.0)
    assert _tuning.team_scale(3) == _tuning.TEAM_SCALE_RANGE[0]
    assert _tuning.team_scale(4) == 1.0                     # the team was busy: not kept
    assert calls == [2, 3, 4]
    assert _tuning.team_scales() == {
        2: {"flop_per_ns": 230.0, "barrier_ns": 180.0, "scale": 4.0},
        3: {"flop_per_ns": 1.0, "barrier_ns": 1.0, "scale": 0.25}}


@pytest.mark.parametrize("scale, team", [(0.25, (2, False)), (1.0, (2, True)), (4.0, (1, False))])
def test_the_team_thresholds_follow_the_scale(scale, team):
    """B=2 D=8 H=48 T=400: 43 kFLOP a step, a team only while awake at the reference scale; a
    machine whose barrier costs 4 times more FLOPs keeps it on one thread, one where it costs
    4 times fewer takes the team at every call."""
    pylstm.set_num_threads(2)
    try:
        with _plan.forced(team_scale=scale):
            plan = ops.explain((2, 400, 8), 48)
    finally:
        pylstm.set_num_threads(None)
    assert (plan.team, plan.team_if_awake) == team
