"""`pylstm.nn.LSTM.state_dict` / `load_state_dict`: dicts of arrays or tensors, `.safetensors`
and `.pt` files written by PyTorch itself (and read back by it), strict and non-strict key
matching, and the errors for missing, extra and misshapen keys."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm.nn import LSTM, load_state_dict_file

torch = require("torch")
safetensors_torch = require("safetensors.torch")

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")


KWARGS = dict(num_layers=2, bidirectional=True, proj_size=2, batch_first=True)


def torch_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.LSTM(3, 4, **KWARGS)


def assert_same_outputs(model, tmodel):
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    y, (h_n, c_n) = model.eval()(x)
    with torch.no_grad():
        yt, (ht, ct) = tmodel(torch.tensor(x))
    for ours, theirs in ((y, yt), (h_n, ht), (c_n, ct)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_state_dict_is_numpy_copies_in_torch_order():
    model = LSTM(3, 4, seed=0, **KWARGS)
    sd = model.state_dict()
    assert list(sd) == list(torch_model().state_dict())
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in sd.values())
    sd["weight_ih_l0"][...] = 0
    assert model.weight_ih_l0.value.any()


def test_load_numpy_dict_and_tensor_dict():
    tmodel = torch_model()
    model = LSTM(3, 4, **KWARGS)
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    assert_same_outputs(model, tmodel)
    other = LSTM(3, 4, **KWARGS)
    other.load_state_dict(tmodel.state_dict())
    assert_same_outputs(other, tmodel)


def test_pt_file_written_by_torch(tmp_path):
    tmodel = torch_model(1)
    path = tmp_path / "lstm.pt"
    torch.save(tmodel.state_dict(), path)
    model = LSTM(3, 4, **KWARGS)
    model.load_state_dict(path)
    assert_same_outputs(model, tmodel)
    assert_same_outputs(LSTM(3, 4, **KWARGS).load_state_dict(str(path)) and model, tmodel)


def test_safetensors_file_written_by_torch(tmp_path):
    tmodel = torch_model(2)
    path = tmp_path / "lstm.safetensors"
    safetensors_torch.save_file(tmodel.state_dict(), str(path))
    model = LSTM(3, 4, **KWARGS)
    model.load_state_dict(str(path))
    assert_same_outputs(model, tmodel)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_files_written_by_pylstm_load_into_torch(tmp_path, suffix):
    model = LSTM(3, 4, seed=5, **KWARGS)
    path = tmp_path / f"lstm{suffix}"
    model.save_state_dict(path)
    tmodel = torch_model()
    if suffix == ".pt":
        tmodel.load_state_dict(torch.load(path, weights_only=True))
    else:
        tmodel.load_state_dict(safetensors_torch.load_file(str(path)))
    assert_same_outputs(model, tmodel)
    again = load_state_dict_file(path)
    assert all(np.array_equal(again[k], v) for k, v in model.state_dict().items())


def test_float64_model_loads_float32_weights():
    tmodel = torch_model()
    model = LSTM(3, 4, dtype="float64", **KWARGS)
    model.load_state_dict(tmodel.state_dict())
    assert model.weight_hr_l1_reverse.value.dtype == np.float64
    np.testing.assert_array_equal(model.weight_hr_l1_reverse.value,
                                  tmodel.weight_hr_l1_reverse.detach().numpy())


def test_missing_extra_and_misshapen_keys():
    model = LSTM(3, 4, **KWARGS)
    before = model.state_dict()
    sd = {k: v.numpy() for k, v in torch_model().state_dict().items()}
    missing = dict(sd)
    del missing["bias_hh_l1_reverse"], missing["weight_hr_l0"]
    with pytest.raises(ValueError, match=r"missing keys \['weight_hr_l0', "
                                         r"'bias_hh_l1_reverse'\], unexpected keys \[\]"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['lstm.extra'\]"):
        model.load_state_dict({**sd, "lstm.extra": np.zeros(3, "float32")})
    bad = dict(sd, weight_hh_l1=np.zeros((16, 3), "float32"))
    with pytest.raises(ValueError, match=r"size mismatch for 'weight_hh_l1': expected shape "
                                         r"\(16, 2\), received shape \(16, 3\)"):
        model.load_state_dict(bad)
    with pytest.raises(ValueError, match="size mismatch"):
        model.load_state_dict(bad, strict=False)
    for k, v in model.state_dict().items():  # nothing was half-loaded
        np.testing.assert_array_equal(v, before[k])

    result = model.load_state_dict({**missing, "extra": np.zeros(1, "float32")}, strict=False)
    assert result.missing_keys == ["weight_hr_l0", "bias_hh_l1_reverse"]
    assert result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model.weight_ih_l0.value, sd["weight_ih_l0"])
    np.testing.assert_array_equal(model.weight_hr_l0.value, before["weight_hr_l0"])


def test_bad_values_and_paths(tmp_path):
    model = LSTM(3, 4)
    sd = model.state_dict()
    with pytest.raises(TypeError, match=r"`state_dict\['weight_ih_l0'\]`.*int64"):
        model.load_state_dict(dict(sd, weight_ih_l0=np.zeros((16, 3), "int64")))
    nan = sd["bias_ih_l0"].copy()
    nan[0] = np.nan
    with pytest.raises(ValueError, match=r"`state_dict\['bias_ih_l0'\]`.*NaN"):
        model.load_state_dict(dict(sd, bias_ih_l0=nan))
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([1, 2])
    with pytest.raises(ValueError, match=r"\.safetensors, \.pt or \.pth.*lstm\.npz"):
        model.load_state_dict(str(tmp_path / "lstm.npz"))
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        model.load_state_dict(tmp_path / "missing.pt")
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="not a state dict"):
        load_state_dict_file(path)
