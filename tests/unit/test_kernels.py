"""pylstm/_kernels.py, _levels.py, _cpu: the kernel level chosen at import, the
PYLSTM_CPU_LEVEL cap, and every level built agreeing with the NumPy reference."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import pylstm
from pylstm import _cpu, _kernels, _levels

PACKAGE = Path(pylstm.__file__).resolve().parent
BUILT = [level.name for level in _kernels.built_levels(_levels.levels_for(platform.machine()),
                                                         PACKAGE)]
SUPPORTED = [level.name for level in _levels.levels_for(platform.machine())
             if all(_cpu.features().get(name, False) for name in level.features)]
ALL = {name: True for name in _cpu.features()}


def test_highest_supported_level_is_chosen():
    level, reason = _kernels.choose(_levels.X86_64, ALL)
    assert level.name == "avx512"
    assert "highest level built" in reason


def test_a_missing_feature_steps_down_and_says_which():
    features = dict(ALL, avx512bw=False)
    level, reason = _kernels.choose(_levels.X86_64, features)
    assert level.name == "avx2"
    assert "avx512bw" in reason and "avx512" in reason


def test_the_os_must_save_the_registers():
    # AVX-512 hardware under an operating system that does not save ZMM state
    level, reason = _kernels.choose(_levels.X86_64, dict(ALL, os_avx512=False))
    assert level.name == "avx2"
    level, _ = _kernels.choose(_levels.X86_64, dict(ALL, os_avx=False, os_avx512=False))
    assert level.name == "baseline"


def test_no_features_gives_the_baseline():
    level, reason = _kernels.choose(_levels.X86_64, {})
    assert level.name == "baseline"
    assert "avx2" in reason


def test_cap_limits_the_level():
    level, reason = _kernels.choose(_levels.X86_64, ALL, cap="avx2")
    assert level.name == "avx2"
    assert "PYLSTM_CPU_LEVEL=avx2" in reason
    # a cap above what the CPU supports changes nothing
    level, _ = _kernels.choose(_levels.X86_64, dict(ALL, avx2=False), cap="avx512")
    assert level.name == "baseline"


def test_unknown_cap_is_a_value_error():
    with pytest.raises(ValueError, match="PYLSTM_CPU_LEVEL.*baseline, avx2, avx512.*'sse9'"):
        _kernels.choose(_levels.X86_64, ALL, cap="sse9")


def test_levels_for_each_architecture():
    assert [level.name for level in _levels.levels_for("x86_64")] == ["baseline", "avx2",
                                                                      "avx512"]
    assert [level.name for level in _levels.levels_for("AMD64")] == ["baseline", "avx2",
                                                                     "avx512"]
    assert [level.name for level in _levels.levels_for("aarch64")] == ["baseline"]
    assert [level.name for level in _levels.levels_for("arm64")] == ["baseline"]
    assert [level.name for level in _levels.levels_for("ppc64le")] == ["baseline"]
    for levels in (_levels.X86_64, _levels.AARCH64):
        for lower, higher in zip(levels, levels[1:]):
            assert set(lower.features) <= set(higher.features)
    for level in _levels.X86_64:
        assert set(level.features) <= set(_cpu.features())


def test_cpu_features_are_consistent():
    features = _cpu.features()
    assert all(isinstance(value, bool) for value in features.values())
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert features["sse2"]                     # part of x86-64
        if features["os_avx512"]:
            assert features["os_avx"]


def test_the_chosen_level_is_loaded():
    assert _kernels.level.name in BUILT
    assert _kernels.core.__name__ == f"pylstm._core_{_kernels.level.name}"
    assert _kernels.step.__name__ == f"pylstm._step_{_kernels.level.name}"
    if os.environ.get(_kernels.ENVIRONMENT_VARIABLE) is None:
        assert _kernels.level.name == [name for name in BUILT if name in SUPPORTED][-1]


# One process per level: the level is chosen at import. Forward and backward of a float32
# LSTM on each route of the compiled kernels, and one step of the step kernel, against the
# float64 NumPy reference; the core's routes again on a team of 2, which must agree bitwise.
_LEVEL_CHECK = r"""
import json
import numpy as np
import pylstm
from pylstm import _kernels, _plan, _reference, ops
from pylstm.streaming import LSTMState, lstm_step

rng = np.random.default_rng(0)
worst, same = 0.0, True


def gap(got, want):
    return float(np.max(np.abs(got - want))) / (1 + float(np.max(np.abs(want))))


for B, T, D, H, route in [(1, 1, 5, 7, _plan.SMALL), (3, 20, 6, 33, _plan.FUSED_INFERENCE),
                          (3, 20, 6, 33, _plan.FUSED_TRAINING),
                          (4, 12, 5, 20, _plan.CHUNKED_INFERENCE)]:
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    k = (0.3 * rng.standard_normal((D, 4 * H))).astype(np.float32)
    u = (0.3 * rng.standard_normal((H, 4 * H))).astype(np.float32)
    b = (0.1 * rng.standard_normal(4 * H)).astype(np.float32)
    dy = rng.standard_normal((B, T, H)).astype(np.float32)
    training = route == _plan.FUSED_TRAINING
    runs = []
    for team in (1, 2):
        with _plan.forced(route=route, team=team):
            y, h, c, cache = ops.lstm_forward(x, k, u, b, training=training)
            grads = ops.lstm_backward(cache, dy) if training else {}
        runs.append([y, h, c] + [grads[name] for name in sorted(grads)
                                 if grads[name] is not None])
    same &= all(np.array_equal(one, two) for one, two in zip(*runs))
    f64 = [a.astype(np.float64) for a in (x, k, u, b, dy)]
    ref_y, _, _, ref_cache = _reference.lstm_forward(*f64[:4], training=True)
    worst = max(worst, gap(runs[0][0], ref_y))
    if training:
        ref_grads = _reference.lstm_backward(ref_cache, f64[4])
        names = [name for name in sorted(grads) if grads[name] is not None]
        for name, got in zip(names, runs[0][3:]):
            worst = max(worst, gap(got, ref_grads[name]))
    state = LSTMState(np.zeros((B, H), np.float32), np.zeros((B, H), np.float32))
    out, _ = lstm_step(x[:, 0], state, k, u, b)
    worst = max(worst, gap(out, ref_y[:, 0]))
print(json.dumps({"level": _kernels.level.name, "worst": worst, "same": bool(same),
                  "config": pylstm.show_config(mode="dicts")["kernels"]["level"]}))
"""


def _run(code, level):
    env = dict(os.environ, **{_kernels.ENVIRONMENT_VARIABLE: level})
    return subprocess.run([sys.executable, "-P", "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, cwd=str(PACKAGE.parent))


@pytest.mark.parametrize("level", BUILT)
def test_each_level_agrees_with_the_reference(level):
    result = _run(_LEVEL_CHECK, level)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # a level the CPU lacks falls back to the highest it supports below the cap
    expected = [name for name in BUILT[:BUILT.index(level) + 1] if name in SUPPORTED][-1]
    assert report["level"] == report["config"] == expected
    assert report["worst"] < 1e-4
    assert report["same"], "results differ between 1 and 2 threads"


def test_unknown_level_fails_the_import_with_a_clear_error():
    result = _run("import pylstm", "sse9")
    assert result.returncode != 0
    assert "ValueError: PYLSTM_CPU_LEVEL must name a kernel level" in result.stderr
    assert "'sse9'" in result.stderr


def test_show_config(capsys):
    config = pylstm.show_config(mode="dicts")
    assert config["pylstm"]["version"] == pylstm.__version__
    assert config["kernels"]["level"] == _kernels.level.name
    assert config["kernels"]["levels_built"] == BUILT
    assert config["kernels"]["reason"] == _kernels.reason
    assert config["memory_pool"]["limit_bytes"] == pylstm.get_memory_pool_limit()
    assert config["threads"]["num_threads"] == pylstm.get_num_threads()
    assert config["blas"], "no BLAS reported"
    assert pylstm.show_config() is None
    out = capsys.readouterr().out
    assert f"level: {_kernels.level.name}" in out
    assert f"reason: {_kernels.reason}" in out
    assert "limit_bytes:" in out
    with pytest.raises(ValueError, match="`mode`.*'text'"):
        pylstm.show_config(mode="text")
