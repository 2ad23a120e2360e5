"""`pylstm.nn.LSTM.step`: stepping over T steps equals the module on the whole sequence and
`torch.nn.LSTM` (1-3 layers, proj_size, hx given, unbatched); the state object (copy,
per-sample reset, to_dict / from_dict, in place); steppers see in-place parameter updates and
are rebuilt when parameters are reloaded; bidirectional and bad input raise clear errors."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import optimizers
from pylstm.nn import LSTM, LSTMStepState

torch = require("torch")

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning",
                                        "ignore:dropout=:UserWarning")


RTOL, ATOL = 1e-5, 1e-6


def make_pair(D, H, seed=0, **kwargs):
    torch.manual_seed(seed)
    tmodel = torch.nn.LSTM(D, H, **kwargs)
    with torch.no_grad():
        for p in tmodel.parameters():
            p.uniform_(-0.6, 0.6)
    model = LSTM(D, H, **kwargs).eval()
    model.load_state_dict(tmodel.state_dict())
    return model, tmodel


def data(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def run_steps(model, x, state, in_place):
    ys = []
    for x_t in x:
        in_place_now = in_place and isinstance(state, LSTMStepState)  # not the hx pair
        y_t, state = model.step(x_t, state, new_state=state if in_place_now else None)
        ys.append(y_t.copy())
    return np.stack(ys), state


CONFIGS = [  # (num_layers, proj_size, with_hx, unbatched, in_place, dropout)
    (1, 0, False, False, True, 0.0),
    (2, 0, True, False, False, 0.5),
    (3, 0, True, False, True, 0.3),
    (2, 3, False, False, False, 0.0),
    (3, 2, True, True, True, 0.0),
    (1, 4, True, True, False, 0.0),
]


@pytest.mark.parametrize("num_layers,proj_size,with_hx,unbatched,in_place,dropout", CONFIGS)
def test_steps_equal_whole_sequence_and_torch(num_layers, proj_size, with_hx, unbatched,
                                              in_place, dropout):
    D, H, N, L = 4, 6, 3, 7
    model, tmodel = make_pair(D, H, num_layers=num_layers, proj_size=proj_size,
                              dropout=dropout)
    P = proj_size or H
    lead = (num_layers,) if unbatched else (num_layers, N)
    x = data((L, D) if unbatched else (L, N, D), 1)
    hx = (data(lead + (P,), 2), data(lead + (H,), 3)) if with_hx else None
    hx_before = None if hx is None else (hx[0].copy(), hx[1].copy())

    y_seq, (h_n, c_n) = model(x, hx)
    model.train()  # dropout is on for calls, never in step
    y, state = run_steps(model, x, hx, in_place)
    ty, (th, tc) = tmodel.eval()(torch.tensor(x),
                                 None if hx is None else tuple(map(torch.tensor, hx)))

    assert isinstance(state, LSTMStepState) and y.shape == y_seq.shape
    for ours, ref in ((y, y_seq), (state.h.reshape(h_n.shape), h_n),
                      (state.c.reshape(c_n.shape), c_n)):
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=ATOL)
    for ours, ref in ((y, ty), (state.h.reshape(h_n.shape), th),
                      (state.c.reshape(c_n.shape), tc)):
        np.testing.assert_allclose(ours, ref.detach().numpy(), rtol=RTOL, atol=ATOL)
    if hx is not None:  # the caller's hx is copied, never written
        np.testing.assert_array_equal(hx[0], hx_before[0])
        np.testing.assert_array_equal(hx[1], hx_before[1])


def test_out_buffer_and_in_place_state_allocate_no_new_outputs():
    model, _ = make_pair(3, 5, num_layers=2)
    x = data((4, 2, 3), 0)
    y_seq, _ = model(x)
    state = model.initial_state(2)
    out = np.empty((2, 5), dtype="float32")
    for x_t in x:
        y_t, new = model.step(x_t, state, out=out, new_state=state)
        assert y_t is out and new is state
    np.testing.assert_allclose(out, y_seq[-1], rtol=RTOL, atol=ATOL)
    out1 = np.empty(5, dtype="float32")
    y1, _ = model.step(x[0, 0], out=out1)
    assert y1.base is out1 or y1 is out1
    np.testing.assert_allclose(out1, model(x[:1, :1])[0][0, 0], rtol=RTOL, atol=ATOL)


def test_reset_copy_and_saving_the_state():
    model, _ = make_pair(3, 4, num_layers=2)
    x = data((6, 3, 3), 0)
    state = model.initial_state(3)
    for x_t in x[:3]:
        _, state = model.step(x_t, state)
    checkpoint = state.copy()
    saved = LSTMStepState.from_dict(state.to_dict())
    state.reset(np.array([False, True, False]))
    for x_t in x[3:]:
        _, state = model.step(x_t, state)
    # sample 1 restarted at step 3: as a fresh sequence of its last three steps
    _, (h_new, c_new) = model(x[3:, 1:2])
    np.testing.assert_allclose(state.h[:, 1:2], h_new, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(state.c[:, 1:2], c_new, rtol=RTOL, atol=ATOL)
    # samples 0 and 2 went on over all six steps
    _, (h_all, c_all) = model(x[:, [0, 2]])
    np.testing.assert_allclose(state.h[:, [0, 2]], h_all, rtol=RTOL, atol=ATOL)
    # the copy and the saved state were not touched, and resume like the original
    for resumed in (checkpoint, saved):
        for x_t in x[3:]:
            _, resumed = model.step(x_t, resumed)
        np.testing.assert_allclose(resumed.h[:, [0, 2]], h_all, rtol=RTOL, atol=ATOL)
        _, (h_full, _) = model(x[:, 1:2])
        np.testing.assert_allclose(resumed.h[:, 1:2], h_full, rtol=RTOL, atol=ATOL)
    state.reset()
    assert not state.h.any() and not state.c.any()
    assert repr(state) == ("LSTMStepState(num_layers=2, batch_size=3, hidden_size=4, "
                           "output_size=4, dtype=float32)")


def test_steppers_follow_in_place_updates_and_reloads():
    model, tmodel = make_pair(3, 5, num_layers=2, proj_size=2)
    x = data((4, 2, 3), 0)
    model.step(x[0])
    steppers = model._steppers()[0]  # this thread's
    assert np.shares_memory(steppers[0]._kernel, model.weight_ih_l0.value)
    assert np.shares_memory(steppers[1]._projection, model.weight_hr_l1.value)

    model.train()
    y, _ = model(x)
    model.backward(np.ones_like(y))
    optimizers.SGD(learning_rate=0.3).apply(list(model.parameters()))
    y_ref, _ = model.eval()(x)
    y_step, _ = run_steps(model, x, None, in_place=True)
    assert model._steppers()[0] is steppers
    np.testing.assert_allclose(y_step, y_ref, rtol=RTOL, atol=ATOL)

    model.load_state_dict(tmodel.state_dict())
    y_step, _ = run_steps(model, x, None, in_place=False)
    np.testing.assert_allclose(y_step, tmodel(torch.tensor(x))[0].detach().numpy(),
                               rtol=RTOL, atol=ATOL)
