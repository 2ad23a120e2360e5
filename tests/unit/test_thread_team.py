"""The core's thread team after a pause: a helper woken on the CPU another member is on moves
to a CPU of its own, leaving its affinity as it was (`pl_leave_shared_cpu` in
pylstm/_thread_team.h).

The scheduler decides where a woken thread runs; the test puts the sleeping helper and the
caller on one CPU before each call, which is where the scheduler often wakes it. It runs in a
subprocess: it changes the affinity of the process's threads."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and two CPUs to run on")

SCRIPT = textwrap.dedent("""
    import os, time
    import numpy as np
    import pylstm
    from pylstm import _plan, ops
    from pylstm._kernels import core as _core

    rng = np.random.default_rng(0)
    args = dict(x=rng.standard_normal((8, 20, 16), dtype=np.float32),
                kernel=rng.uniform(-0.1, 0.1, (16, 256)).astype(np.float32),
                recurrent_kernel=rng.uniform(-0.1, 0.1, (64, 256)).astype(np.float32),
                bias=np.zeros(256, np.float32))
    pylstm.set_num_threads(2)
    allowed = os.sched_getaffinity(0)
    before = set(map(int, os.listdir("/proc/self/task")))
    with _plan.forced(team=2):
        expected = ops.lstm_forward(**args)[0]
        helpers = set(map(int, os.listdir("/proc/self/task"))) - before
        assert len(helpers) == 1, helpers
        helper = helpers.pop()
        here = min(allowed)
        os.sched_setaffinity(0, {here})                  # the caller, this thread
        for _ in range(10):
            os.sched_setaffinity(helper, {here})         # the helper sleeps on the caller's CPU
            time.sleep(0.02)
            os.sched_setaffinity(helper, allowed)
            y = ops.lstm_forward(**args)[0]
            np.testing.assert_array_equal(y, expected)
            cpus = _core.team_cpus(2)
            assert cpus[0] == here and cpus[1] != here and cpus[1] in allowed, cpus
            assert os.sched_getaffinity(helper) == allowed
    print("ok")
""")


def test_a_helper_woken_beside_the_caller_moves_to_its_own_cpu():
    result = subprocess.run([sys.executable, "-P", "-c", SCRIPT], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
