"""The base of pylstm's Keras-style optimizers: what Keras 3's `BaseOptimizer` does around each
optimizer's update formula.

Design:
    `optimizer.apply(variables)` takes one step over the trainable `Variable`s, in Keras's
    order (`keras.optimizers.Optimizer.apply`):

    1. gradients: each `Variable.grad`, in the variable's dtype, divided by
       `loss_scale_factor` when set;
    2. with `gradient_accumulation_steps = n`: on n - 1 of every n calls the gradients are
       only summed into the `gradient_accumulator` slots; on the n-th, their mean (the sum
       plus the current gradients, over n) is used and the accumulators are zeroed;
    3. on an update: clipping (`clipnorm` per variable, `global_clipnorm` over all, or
       `clipvalue` elementwise; at most one), decoupled weight decay
       `w -= w * weight_decay * learning_rate` (variables excluded with
       `exclude_from_weight_decay` are left alone), then the subclass's formula, `_update`;
    4. with `use_ema`: `average = m * average + (1 - m) * w`, where m is `ema_momentum`, or 0
       while `iterations` is 0 (so the average starts at the weights), and every
       `ema_overwrite_frequency` iterations the weights are overwritten with the average;
    5. each variable's `constraint`; the step count goes up by one.

    `learning_rate` is a float, a `LearningRateSchedule` (called with the count of `apply`
    calls so far, accumulation calls included) or a zero-argument callable; it is read once
    per update. `iterations` counts updates (calls divided by `gradient_accumulation_steps`),
    which the bias corrections of Adam and its kin use, as in Keras.

    Gradients of row lookups (Keras 3 on TensorFlow). TensorFlow gives the gradient of an
    `Embedding`'s table as `tf.IndexedSlices`, one row per looked-up token, duplicates not
    summed; pylstm's `Embedding` records the same rows in `Variable.grad_slices`. Keras's
    elementwise unary ops (`ops.square`, `ops.abs`) act on the slices row by row, and the next
    binary op with a dense operand sums the duplicates. So for such a variable Keras's
    "square of the gradient" is the per-row sum of the squared occurrence rows, not the
    square of their sum (Adam's, Nadam's, RMSprop's, Adagrad's and Adadelta's second moments;
    Adamax's `abs`), and the optimizers take both from `_square` and `_abs`. Around the
    formula: `loss_scale_factor` divides the rows (Keras on TensorFlow fails there);
    `clipnorm` scales the rows by the norm of the rows (`tf.clip_by_norm`), `clipvalue`
    clips each row before they are summed, `global_clipnorm` counts the rows' squares in the
    global norm and leaves the scaled gradient dense, as does gradient accumulation and a
    regularizer's gradient (a dense term added to the slices). SGD, Lion, weight decay and
    the moving average see only the summed gradient. With the JAX or PyTorch backend Keras's
    gradients are dense, and its updates are those of `grad` alone.

    Per-variable state lives in `_slots[variable][name]` (arrays of the variable's shape and
    dtype, created on its first step); `_slot_names` lists the names in use, the EMA's
    `average` and the `gradient_accumulator` first. `pylstm.models.keras_io` writes them in
    Keras's order (`_OPTIMIZER_SLOTS`).
"""

import math
import re

import numpy as np

from pylstm._serialization import Configurable, snake_case
from pylstm.optimizers import schedules


def _check_learning_rate(learning_rate):
    if isinstance(learning_rate, schedules.LearningRateSchedule) or (
            callable(learning_rate) and not isinstance(learning_rate, type)):
        return learning_rate
    # 0 is allowed, as Keras allows it: a warm-up from LearningRateScheduler may start there
    if (isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.floating))
            or not 0 <= learning_rate < np.inf):
        raise ValueError(
            "Argument `learning_rate` must be a finite float >= 0, a LearningRateSchedule or a "
            f"callable that takes no argument and returns the rate, received {learning_rate!r}.")
    return float(learning_rate)


def _map_rows(slices, fn):
    """`(indices, fn(values))` for slices `(indices, values)`; None for None."""
    return None if slices is None else (slices[0], fn(slices[1]))


class Optimizer(Configurable):
    """Base class of the Keras-style optimizers, with Keras 3's common arguments.

    Subclasses set `_update_slots` (the names of their per-variable state) and implement
    `_update(value, grad, slots, learning_rate)`, which updates `value` (an array of a
    variable's shape and dtype) in place, taking the square and absolute value of the gradient
    from `_square` and `_abs` (Keras's values for an `Embedding`'s table: see the module).

    Args:
        learning_rate: float > 0, a `pylstm.optimizers.schedules.LearningRateSchedule`, or a
            callable taking no argument and returning the rate.
        weight_decay: float or None; if set, each step first shrinks the weights by
            `weight_decay * learning_rate` of themselves (decoupled weight decay,
            Loshchilov & Hutter, 2019, as Keras applies it to every optimizer).
        clipnorm: float or None; each gradient is rescaled to an L2 norm of at most `clipnorm`.
        clipvalue: float or None; each gradient entry is clipped to `[-clipvalue, clipvalue]`.
        global_clipnorm: float or None; all gradients are rescaled together so that their
            joint L2 norm is at most `global_clipnorm`.
        use_ema: bool; keep an exponential moving average of the weights.
        ema_momentum: float in `[0, 1]`, the average's decay (with `use_ema`).
        ema_overwrite_frequency: int >= 1 or None; with `use_ema`, overwrite the weights with
            their average every so many iterations. If None, call `finalize_variable_values`
            at the end of training (`fit` does).
        loss_scale_factor: float or None; the training loop multiplies the loss by it
            (`scale_loss`) and the optimizer divides the gradients by it.
        gradient_accumulation_steps: int >= 2 or None; update the weights every so many
            calls, with the mean of the gradients since the last update.
        name: str or None, the optimizer's name (Keras's; defaults to the snake_case class
            name).

    Raises:
        ValueError: for an invalid learning rate, more than one clipping argument,
            `ema_momentum` outside `[0, 1]`, `ema_overwrite_frequency` not an int >= 1, or
            `gradient_accumulation_steps` not an int >= 2.

    Example:

    >>> import numpy as np
    >>> from pylstm.variable import Variable
    >>> class SignSGD(Optimizer):  # the common arguments come with the base class
    ...     def _update(self, value, grad, slots, learning_rate):
    ...         value -= learning_rate * np.sign(grad)
    >>> w = Variable("w", np.array([1.0, -2.0]))
    >>> w.grad[...] = [0.5, 3.0]
    >>> optimizer = SignSGD(learning_rate=0.1, weight_decay=0.5)  # first w -= 0.05 * w
    >>> optimizer.apply([w])
    >>> np.round(w.value, 4), optimizer.iterations
    (array([ 0.85, -2.  ]), 1)
    """

    _update_slots = ()

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None):
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set, received "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}."
            )
        if gradient_accumulation_steps is not None and (
                isinstance(gradient_accumulation_steps, bool)
                or not isinstance(gradient_accumulation_steps, (int, np.integer))
                or gradient_accumulation_steps < 2):
            raise ValueError("Argument `gradient_accumulation_steps` must be an int >= 2 or "
                             f"None, received {gradient_accumulation_steps!r}.")
        if use_ema:
            if not 0 <= ema_momentum <= 1:
                raise ValueError(f"Argument `ema_momentum` must be in [0, 1], received "
                                 f"{ema_momentum!r}.")
            if ema_overwrite_frequency is not None and (
                    isinstance(ema_overwrite_frequency, bool)
                    or not isinstance(ema_overwrite_frequency, (int, np.integer))
                    or ema_overwrite_frequency < 1):
                raise ValueError("Argument `ema_overwrite_frequency` must be an int >= 1 or "
                                 f"None, received {ema_overwrite_frequency!r}.")
        if weight_decay is not None and (isinstance(weight_decay, bool) or not isinstance(
                weight_decay, (int, float, np.floating))):
            raise ValueError(f"Argument `weight_decay` must be a float or None, received "
                             f"{weight_decay!r}.")
        self._learning_rate = _check_learning_rate(learning_rate)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = bool(use_ema)
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = (None if gradient_accumulation_steps is None
                                            else int(gradient_accumulation_steps))
        self.name = snake_case(type(self).__name__) if name is None else name
        self._iterations = 0
        self._grad_slices = None  # the slices of the variable `_update` is updating
        self._slots = {}
        self._excluded = []
        self._exclude_pattern = None

    @property
    def _slot_names(self):
        return ((("average",) if self.use_ema else ())
                + (("gradient_accumulator",) if self.gradient_accumulation_steps else ())
                + self._update_slots)

    @property
    def iterations(self):
        """int, the number of updates applied (Keras's `iterations`: the calls to `apply`
        divided by `gradient_accumulation_steps`)."""
        return self._iterations // (self.gradient_accumulation_steps or 1)

    @property
    def learning_rate(self):
        """The rate of the next update, a float (the schedule's or callable's value now, or the
        float). Setting a float replaces the rate (as `ReduceLROnPlateau` does); setting a
        schedule or callable replaces the rate's source.

        Raises:
            TypeError: on setting a float while a schedule or callable is the source (Keras
                refuses it for a schedule too).
        """
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            return float(lr(self._iterations))
        if callable(lr):
            return float(lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if callable(learning_rate) and not isinstance(learning_rate, type):
            self._learning_rate = _check_learning_rate(learning_rate)
            return
        if callable(self._learning_rate):
            raise TypeError(
                f"This optimizer was created with a {type(self._learning_rate).__name__} as its "
                "`learning_rate`, hence its learning rate is not settable. If you need the "
                "learning rate to be settable, create the optimizer with a float "
                "`learning_rate`.")
        self._learning_rate = _check_learning_rate(learning_rate)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Exempts variables from `weight_decay`, as Keras's method of the same name.

        Args:
            var_list: list of `Variable`s to exempt.
            var_names: list of str; a variable whose own name (`"kernel"`, `"bias"`: Keras's
                `Variable.name`, without the layer's name before the last `/`) contains one of
                them, as a regular expression search (e.g. `["bias"]`), is exempt.

        Raises:
            ValueError: if the optimizer has already taken a step.
        """
        if self._iterations:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the "
                             "optimizer's first step.")
        self._excluded = list(var_list or ())
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, var):
        # identity, not ids: the variables keep it through pickling with their optimizer
        if any(var is v for v in self._excluded):
            return False
        return (self._exclude_pattern is None
                or self._exclude_pattern.search(var.name.rpartition("/")[2]) is None)

    def scale_loss(self, loss):
        """The loss multiplied by `loss_scale_factor` (unchanged if None), before gradients
        are taken (Keras's `scale_loss`)."""
        return loss if self.loss_scale_factor is None else loss * self.loss_scale_factor

    def _slots_of(self, var):
        slots = self._slots.get(var)
        if slots is None:
            slots = self._slots[var] = {name: self._initial_slot(name, var.value)
                                        for name in self._slot_names}
        return slots

    def _initial_slot(self, name, value):
        return np.zeros_like(value)

    def apply(self, variables):
        """Takes one optimization step on the trainable `variables`, in place (see the module's
        Design for the order of the operations).

        Args:
            variables: list of `pylstm.variable.Variable`, each with its `.grad` set; frozen
                ones are skipped.
        """
        variables = [v for v in variables if v.trainable]
        grads = [v.grad.astype(v.dtype, copy=False) for v in variables]
        slices = [v.grad_slices for v in variables]
        for var in variables:
            var.grad_slices = None  # consumed: the next step records its own
        if self.loss_scale_factor is not None:
            grads = [g / self.loss_scale_factor for g in grads]
            slices = [_map_rows(s, lambda rows: rows / self.loss_scale_factor)
                      for s in slices]
        steps = self.gradient_accumulation_steps
        if steps and (self._iterations + 1) % steps:
            for var, grad in zip(variables, grads):
                self._slots_of(var)["gradient_accumulator"] += grad
        else:
            if steps:
                grads = [(g + self._slots_of(v)["gradient_accumulator"]) / steps
                         for v, g in zip(variables, grads)]
                slices = [None] * len(variables)  # the accumulated sum is dense in Keras
                for var in variables:
                    self._slots_of(var)["gradient_accumulator"][...] = 0
            self._step(variables, *self._clip(grads, slices))
        if self.use_ema:
            self._update_average(variables)
        for var in variables:
            if var.constraint is not None:
                constrained = np.asarray(var.constraint(var.value))
                if constrained.shape != var.value.shape:
                    raise ValueError(f"The constraint of variable '{var.name}' returned shape "
                                     f"{constrained.shape}; expected {var.value.shape}.")
                var.value[...] = constrained
        self._iterations += 1

    def apply_gradients(self, grads_and_vars):
        """Takes one optimization step with the given gradients, as Keras 3's method of the
        same name: each gradient is copied into its variable's `grad` (a dense gradient:
        `grad_slices` cleared), then `apply` runs.

        Args:
            grads_and_vars: iterable of `(gradient, variable)` pairs: a `Variable` and an
                array of its shape.

        Returns:
            int, `iterations` after the step.

        Raises:
            ValueError: a pair that is not `(array, Variable)` of one shape.
        """
        pairs = list(grads_and_vars)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 \
                    or not hasattr(pair[1], "grad"):
                raise ValueError(f"Argument `grads_and_vars` must hold (gradient, Variable) "
                                 f"pairs, received {pair!r:.100} at index {i}.")
            if np.shape(pair[0]) != pair[1].shape:
                raise ValueError(f"Argument `grads_and_vars`: the gradient at index {i} has "
                                 f"shape {np.shape(pair[0])}, its variable '{pair[1].name}' "
                                 f"{pair[1].shape}.")
        for gradient, var in pairs:
            var.grad[...] = gradient
            var.grad_slices = None
        self.apply([var for _, var in pairs])
        return self.iterations

    def _step(self, variables, grads, slices):
        """Weight decay, then the subclass's update, at the current learning rate; `slices`
        (each None or `(indices, values)`) serve `_square` and `_abs` during the update."""
        lr = self.learning_rate
        if self.weight_decay is not None:
            for var in variables:
                if self._use_weight_decay(var):
                    var.value -= var.value * (self.weight_decay * lr)
        self._prepare_update()
        try:
            for var, grad, self._grad_slices in zip(variables, grads, slices):
                self._update(var.value, grad, self._slots_of(var), lr)
        finally:
            self._grad_slices = None

    @staticmethod
    def _summed(like, indices, values):
        """The dense sum of slices: zeros like `like`, with `values` added at `indices`."""
        out = np.zeros_like(like)
        np.add.at(out, indices, values)
        return out

    def _square(self, x, factor=None):
        """The square of `x` as Keras 3 on TensorFlow computes it, where `x` is the gradient
        of the variable being updated, or `factor * gradient` with `factor` an array of its
        shape (Adadelta's step): `np.square(x)`, or for a gradient given as slices,
        `factor ** 2` times the per-row sum of the squared rows."""
        if self._grad_slices is None:
            return np.square(x)
        indices, values = self._grad_slices
        squares = self._summed(x, indices, np.square(values))
        return squares if factor is None else np.square(factor) * squares

    def _abs(self, grad):
        """The absolute value of the variable's gradient as Keras 3 on TensorFlow computes
        it: `np.abs(grad)`, or for a gradient given as slices, the per-row sum of the rows'
        absolute values."""
        if self._grad_slices is None:
            return np.abs(grad)
        indices, values = self._grad_slices
        return self._summed(grad, indices, np.abs(values))

    def _prepare_update(self):
        """Per-step state shared by all variables (Nadam's momentum schedule)."""

    def _update(self, value, grad, slots, learning_rate):
        raise NotImplementedError

    def _update_average(self, variables):
        momentum = self.ema_momentum if self.iterations else 0.0
        for var in variables:
            average = self._slots_of(var)["average"]
            average *= momentum
            average += (1 - momentum) * var.value
        frequency = self.ema_overwrite_frequency
        if frequency and (self.iterations + 1) % frequency == 0:
            for var in variables:
                var.value[...] = self._slots[var]["average"]

    def finalize_variable_values(self, var_list):
        """With `use_ema`, overwrites the variables with their moving averages; else does
        nothing. Keras's `fit` calls it after the last epoch.

        Args:
            var_list: list of `Variable`s (the model's trainable variables).
        """
        if self.use_ema:
            for var in var_list:
                slots = self._slots.get(var)
                if slots is not None:
                    var.value[...] = slots["average"]

    def _clip(self, grads, slices):
        """`(grads, slices)` clipped; a gradient given as slices is clipped as TensorFlow
        clips `IndexedSlices` (see the module's Design)."""
        if self.clipnorm is not None and self.clipnorm > 0:
            scales = [self.clipnorm / max(np.linalg.norm(g if s is None else s[1]),
                                          self.clipnorm) for g, s in zip(grads, slices)]
            return ([g * c for g, c in zip(grads, scales)],
                    [_map_rows(s, lambda rows, c=c: rows * c) for s, c in zip(slices, scales)])
        if self.global_clipnorm is not None and self.global_clipnorm > 0:
            norm = math.sqrt(sum(float(np.sum(np.square(g if s is None else s[1],
                                                        dtype=np.float64)))
                                 for g, s in zip(grads, slices)))
            scale = self.global_clipnorm / max(norm, self.global_clipnorm)
            return [g * scale for g in grads], [None] * len(grads)
        if self.clipvalue is not None and self.clipvalue > 0:
            clipped = [_map_rows(s, lambda rows: np.clip(rows, -self.clipvalue, self.clipvalue))
                       for s in slices]
            return ([np.clip(g, -self.clipvalue, self.clipvalue) if s is None
                     else self._summed(g, *s) for g, s in zip(grads, clipped)], clipped)
        return grads, slices

    def _learning_rate_config(self):
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            return schedules.serialize(lr)
        return lr

    def get_config(self):
        """The constructor's arguments in Keras's order; a schedule as its serialized dict (a
        plain callable is returned as is, and does not serialize to JSON)."""
        return {"name": self.name, "learning_rate": self._learning_rate_config(),
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)
