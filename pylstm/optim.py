"""PyTorch-style optimizers for `pylstm.nn` modules: `torch.optim`'s names, arguments,
defaults and formulas (`SGD`, `Adam`, `AdamW`, `RMSprop`), in NumPy.

They take `module.parameters()` (the `Variable`s whose `.grad` a module's `backward`
accumulates), or parameter groups as dicts with their own options, and are driven as in
PyTorch::

    optimizer = optim.Adam(lstm.parameters(), lr=1e-3)
    for x, y in batches:
        optimizer.zero_grad()
        output, _ = lstm(x)
        lstm.backward(loss_gradient(output, y))
        optimizer.step()

The formulas are torch's, which differ from Keras's (`pylstm.optimizers`) in a few places:
Adam's and RMSprop's `eps` is added after the square root, `weight_decay` is an L2 term added
to the gradient (decoupled in `AdamW`), SGD's momentum buffer holds gradients rather than steps,
and the defaults differ (`eps=1e-8`, RMSprop's `alpha=0.99` and `lr=0.01`). Adam's step is
Keras's `adam_update` with torch's epsilon.
"""

import math

import numpy as np

from pylstm.optimizers.adam import adam_update


class Optimizer:
    """Base class, as `torch.optim.Optimizer`: parameter groups, per-parameter state, `step`
    and `zero_grad`.

    Args:
        params: an iterable of `Variable`s (`module.parameters()`), of `(name, Variable)`
            pairs (`module.named_parameters()`), or of dicts `{"params": [...], **options}`
            whose options override `defaults` for that group.
        defaults: dict of the optimizer's options and their default values.

    Attributes:
        param_groups: list of dicts, each `{"params": [Variable, ...], **options}`; change
            `group["lr"]` to change a group's learning rate (as torch's schedulers do).
        state: dict `{Variable: {name: value}}`, the per-parameter state (`"step"`, moment
            arrays in the parameter's shape and dtype), created on a parameter's first step.

    Raises:
        ValueError: for an empty parameter list, a parameter in two groups, or a group
            without `params`.
        TypeError: for a parameter that is not a `Variable`.

    Example:

    >>> from pylstm import nn
    >>> lstm = nn.LSTM(input_size=2, hidden_size=3, seed=0)
    >>> weights = [p for name, p in lstm.named_parameters() if name.startswith("weight")]
    >>> biases = [p for name, p in lstm.named_parameters() if name.startswith("bias")]
    >>> optimizer = SGD([{"params": weights}, {"params": biases, "lr": 0.01}], lr=0.1)
    >>> for group in optimizer.param_groups:
    ...     group["lr"] *= 0.5  # what a learning-rate scheduler does
    >>> [group["lr"] for group in optimizer.param_groups]
    [0.05, 0.005]
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Adds a parameter group (a dict with `"params"` and optional options), as torch's
        `add_param_group` (e.g. to train a module's new parts with their own rate).

        Raises:
            ValueError: if `params` is missing or a parameter is already in a group.
            TypeError: for a parameter that is not a `Variable`.
        """
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise ValueError(f"Argument `param_group` must be a dict with a 'params' key, "
                             f"received {param_group!r:.100}.")
        params = param_group["params"]
        params = [params] if hasattr(params, "grad") else list(params)
        params = [p[1] if isinstance(p, tuple) and len(p) == 2 else p for p in params]
        for p in params:
            if not (hasattr(p, "value") and hasattr(p, "grad") and hasattr(p, "trainable")):
                raise TypeError(f"optimizer can only optimize Variables (`module.parameters()`), "
                                f"but one of the params is {type(p).__name__}")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) < len(params):
            raise ValueError("some parameters appear in more than one parameter group")
        group = {**self.defaults, **param_group, "params": params}
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Zeroes every parameter's `.grad`, as `torch.optim.Optimizer.zero_grad`. The arrays
        are kept (modules accumulate into them), so `set_to_none` is accepted and has the
        effect of zeroing."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad()

    def step(self, closure=None):
        """Takes one step on every trainable parameter, in place.

        Args:
            closure: optional callable that recomputes the gradients and returns the loss,
                called first (as in torch).

        Returns:
            The closure's loss, or None.
        """
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.trainable:
                    grad = p.grad.astype(p.dtype, copy=False)
                    if group.get("maximize"):
                        grad = -grad
                    state = self.state.setdefault(p, {"step": 0})
                    state["step"] += 1
                    self._update(p.value, grad, state, group)
        return loss

    def _update(self, value, grad, state, group):
        raise NotImplementedError

    def state_dict(self):
        """The state as torch writes it: `{"state": {index: {...}}, "param_groups": [...]}`,
        parameters numbered in the order of the groups; arrays are copies."""
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: {k: v.copy() if isinstance(v, np.ndarray) else v
                                for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restores what `state_dict` returned, onto parameters in the same order.

        Raises:
            ValueError: if the groups or their sizes, or a state array's shape, differ.
        """
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"])
                for g, own in zip(groups, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameter groups "
                             "or of parameters in a group")
        params = {}
        for saved, own in zip(groups, self.param_groups):
            params.update(zip(saved["params"], own["params"]))
            own.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            restored = {}
            for k, v in s.items():
                if isinstance(v, np.ndarray):
                    if v.shape != p.shape:
                        raise ValueError(f"state {k!r} of parameter {i} has shape {v.shape}, "
                                         f"expected {p.shape}")
                    v = v.astype(p.dtype, copy=True)
                restored[k] = v
            self.state[p] = restored


def _check(value, name, low=0.0, high=None):
    if not value >= low or (high is not None and not value < high):
        raise ValueError(f"Invalid {name}: {value}")


def _check_betas(betas):
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as `torch.optim.SGD`::

        g = grad + weight_decay * w
        buf = g                                   # first step
        buf = momentum * buf + (1 - dampening) g  # later steps
        g = g + momentum * buf if nesterov else buf
        w -= lr * g

    Args:
        params: `module.parameters()` or parameter groups (see `Optimizer`).
        lr: float >= 0.
        momentum: float >= 0.
        dampening: float, damping of the gradient added to the momentum.
        weight_decay: float >= 0, the L2 coefficient.
        nesterov: bool; needs `momentum > 0` and `dampening == 0`.
        maximize: bool, ascend the objective.

    Raises:
        ValueError: for a negative `lr`, `momentum` or `weight_decay`, or `nesterov` without
            momentum or with dampening.

    Example:

    >>> import numpy as np
    >>> from pylstm import nn
    >>> lstm = nn.LSTM(input_size=2, hidden_size=3, seed=0)
    >>> optimizer = SGD(lstm.parameters(), lr=0.5, momentum=0.9)
    >>> x, losses = np.ones((4, 1, 2), dtype="float32"), []  # (L, N, H_in)
    >>> for _ in range(3):
    ...     optimizer.zero_grad()
    ...     output, _ = lstm(x)
    ...     losses.append(round(float(np.mean(output ** 2)), 4))
    ...     _ = lstm.backward(2 * output / output.size)  # d mean(output ** 2) / d output
    ...     optimizer.step()
    >>> losses
    [0.0267, 0.0229, 0.0172]
    """

    def __init__(self, params, lr=0.001, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        _check(lr, "learning rate")
        _check(momentum, "momentum value")
        _check(weight_decay, "weight_decay value")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov,
                                  "maximize": maximize})

    def _update(self, value, grad, state, group):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * value
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        value -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2014), as `torch.optim.Adam`::

        g = grad + weight_decay * w               # L2, not decoupled (see AdamW)
        m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
        w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    with `v` replaced by its running maximum under `amsgrad`. (Keras's Adam adds `eps` before
    the bias correction of `sqrt(v)`; this is torch's placement.)

    Args:
        params: `module.parameters()` or parameter groups (see `Optimizer`).
        lr: float >= 0.
        betas: pair of floats in `[0, 1)`, the moments' decay rates.
        eps: float >= 0.
        weight_decay: float >= 0, the L2 coefficient.
        amsgrad: bool, the AMSGrad variant (Reddi et al., 2018).
        maximize: bool, ascend the objective.
        decoupled_weight_decay: bool; if True, behave as `AdamW`.

    Raises:
        ValueError: for a negative `lr`, `eps` or `weight_decay`, or a beta outside `[0, 1)`.

    Example:

    >>> import numpy as np
    >>> from pylstm import nn
    >>> lstm = nn.LSTM(input_size=2, hidden_size=1, seed=0)
    >>> optimizer = Adam(lstm.parameters(), lr=0.05)
    >>> x, y = np.ones((4, 1, 2), dtype="float32"), np.full((4, 1, 1), 0.5, dtype="float32")
    >>> for _ in range(20):
    ...     optimizer.zero_grad()
    ...     output, _ = lstm(x)
    ...     _ = lstm.backward(2 * (output - y) / output.size)  # the gradient of the MSE
    ...     optimizer.step()
    >>> round(float(np.mean((lstm(x)[0] - y) ** 2)), 4)  # 0.6658 before training
    0.0908
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        _check(lr, "learning rate")
        _check(eps, "epsilon value")
        _check(weight_decay, "weight_decay value")
        _check_betas(betas)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": amsgrad,
                                  "maximize": maximize,
                                  "decoupled_weight_decay": decoupled_weight_decay})

    def _update(self, value, grad, state, group):
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        if wd and group["decoupled_weight_decay"]:
            value *= 1 - lr * wd
        elif wd:
            grad = grad + wd * value
        if "exp_avg" not in state:
            state["exp_avg"], state["exp_avg_sq"] = np.zeros_like(value), np.zeros_like(value)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(value)
        t = state["step"]
        adam_update(value, grad, state["exp_avg"], state["exp_avg_sq"],
                    state.get("max_exp_avg_sq") if group["amsgrad"] else None, lr, beta1, beta2,
                    group["eps"] * math.sqrt(1 - beta2**t), t)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as `torch.optim.AdamW`:
    `w *= 1 - lr * weight_decay`, then `Adam`'s step without the L2 term.

    Args:
        params: `module.parameters()` or parameter groups (see `Optimizer`).
        lr, betas, eps, amsgrad, maximize: see `Adam`.
        weight_decay: float >= 0 (torch's default 0.01).

    Raises:
        ValueError: as `Adam`.

    Example:

    >>> import numpy as np
    >>> from pylstm import nn
    >>> lstm = nn.LSTM(input_size=2, hidden_size=3, seed=0)
    >>> decay = [p for name, p in lstm.named_parameters() if name.startswith("weight")]
    >>> no_decay = [p for name, p in lstm.named_parameters() if name.startswith("bias")]
    >>> optimizer = AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
    >>> optimizer.zero_grad()
    >>> output, _ = lstm(np.ones((4, 1, 2), dtype="float32"))
    >>> _ = lstm.backward(2 * output / output.size)
    >>> optimizer.step()
    >>> [group["weight_decay"] for group in optimizer.param_groups]
    [0.01, 0.0]
    >>> sorted(optimizer.state[lstm.bias_ih_l0])
    ['exp_avg', 'exp_avg_sq', 'step']
    """

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012), as `torch.optim.RMSprop`::

        g = grad + weight_decay * w
        s = alpha s + (1 - alpha) g^2
        a = alpha a + (1 - alpha) g;  avg = sqrt(s - a^2) + eps    # centered
        avg = sqrt(s) + eps                                        # otherwise
        buf = momentum buf + g / avg;  w -= lr * buf               # w -= lr g / avg if no momentum

    (Keras's RMSprop puts `eps` inside the square root.)

    Args:
        params: `module.parameters()` or parameter groups (see `Optimizer`).
        lr: float >= 0.
        alpha: float >= 0, the decay of the mean square.
        eps: float >= 0.
        weight_decay: float >= 0, the L2 coefficient.
        momentum: float >= 0.
        centered: bool, normalise by the estimated variance.
        maximize: bool, ascend the objective.

    Raises:
        ValueError: for a negative `lr`, `alpha`, `eps`, `weight_decay` or `momentum`.

    Example:

    >>> import numpy as np
    >>> from pylstm import nn
    >>> lstm = nn.LSTM(input_size=2, hidden_size=3, seed=0)
    >>> optimizer = RMSprop(lstm.parameters(), lr=0.01, momentum=0.9, centered=True)
    >>> x, losses = np.ones((4, 1, 2), dtype="float32"), []  # (L, N, H_in)
    >>> for _ in range(3):
    ...     optimizer.zero_grad()
    ...     output, _ = lstm(x)
    ...     losses.append(round(float(np.mean(output ** 2)), 4))
    ...     _ = lstm.backward(2 * output / output.size)  # d mean(output ** 2) / d output
    ...     optimizer.step()
    >>> losses, sorted(optimizer.state[lstm.weight_ih_l0])
    ([0.0267, 0.006, 0.0013], ['grad_avg', 'momentum_buffer', 'square_avg', 'step'])
    """

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        _check(lr, "learning rate")
        _check(eps, "epsilon value")
        _check(momentum, "momentum value")
        _check(weight_decay, "weight_decay value")
        _check(alpha, "alpha value")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps,
                                  "weight_decay": weight_decay, "momentum": momentum,
                                  "centered": centered, "maximize": maximize})

    def _update(self, value, grad, state, group):
        alpha = group["alpha"]
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * value
        if "square_avg" not in state:
            state["square_avg"] = np.zeros_like(value)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(value)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(value)
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * np.square(grad)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg *= alpha
            grad_avg += (1 - alpha) * grad
            avg = np.sqrt(square_avg - np.square(grad_avg)) + group["eps"]
        else:
            avg = np.sqrt(square_avg) + group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += grad / avg
            value -= group["lr"] * buf
        else:
            value -= group["lr"] * grad / avg


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop"]
