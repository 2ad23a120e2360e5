"""Compile, fit, evaluate and predict for models of any number of inputs and outputs (Keras 3's
`Trainer`), shared by `Sequential` and the functional `Model`.

Design:
    `Trainer` sees a model only through a flat interface, inputs and outputs in order:
    `input_names` and `output_names` (lists of str: the keys of `x`, `y`, `loss`, `metrics` and
    `loss_weights` dicts, and the prefixes of the per-output log names), `_input_dtypes` (the
    numpy dtype each input is cast to: integer inputs for token ids stay integers), `dtype` (the
    targets' dtype; or `_output_dtypes`, one per output), `_ensure_built_flat(shapes)`,
    `_forward_flat(xs, training) -> (ys, masks)`, `_backward_flat(grads)` (one gradient or None
    per output; the model adds the activity regularizers' gradients and puts weight gradients in
    `Variable.grad`), `weights`, `trainable_variables` and `losses` (the penalties).

    One training step is `compute_gradients` then `apply_gradients` (their private halves,
    and `fit`'s seam `_gradient_fn` for distributed trainers: see `_train_step`). Computing
    zeroes every `Variable.grad`, runs the forward pass, evaluates each output's loss and its
    gradient d loss / d y_pred (with the output's sample weights and its mask, when it has
    one, as Keras combines them), scales both by the output's loss weight, sends the
    gradients back, and adds each weight regularizer's `gradient(value)` to its variable's
    `grad`; the whole gradient is then scaled by the optimizer's `loss_scale_factor` and, for
    a shard of a global batch, by its share of the samples. Applying lets the optimizer
    update the trainable variables. The logged `loss`
    is the weighted sum plus every penalty; with several losses each output's unweighted loss
    is logged as `<output>_loss`, and its metrics as `<output>_<metric>`, as Keras 3 names them.

    `fit`, `evaluate` and `predict` draw their batches from `pylstm.models._data` (arrays,
    `PyDataset`s, generators, iterables; Keras's epochs and steps) and call every callback hook
    where Keras 3's TensorFlow trainer calls it, through `_CallbackList`: the user's callbacks,
    then `History` and the progress bar (`pylstm.models._progress`). A batch's begin hook runs
    before the batch is drawn, its end hook gets the epoch's running means, and
    `stop_training` is read after every batch.
"""

import collections
import warnings

import numpy as np

from pylstm import losses as losses_module
from pylstm import metrics as metrics_module
from pylstm import optimizers
from pylstm._validation import NonFiniteError
from pylstm.callbacks import Callback, History
from pylstm.models import _data, _formats
from pylstm.models._progress import ProgressBar
from pylstm.variable import SlicedGradient

# One output as training sees it: its loss (None: no loss), weight, the log name of its loss
# (None when not logged apart) and its metrics as `(log name, fn)` pairs.
_Target = collections.namedtuple("_Target", ["name", "loss", "weight", "loss_log", "metrics"])
# A compiled metric: the name it was given (a string, else the metric's `name`) and its
# `pylstm.metrics.Metric` (a function given to `compile` is wrapped in a `MeanMetricWrapper`).
_Metric = collections.namedtuple("_Metric", ["name", "fn"])
# Sample weights are cast to float64, the dtype in which losses are reduced.
_WEIGHT_DTYPE = np.dtype("float64")


class Trainer:
    """`compile`, `fit`, `evaluate`, `predict`, the one-batch methods and `to_json` over the
    flat model interface described in this module's docstring (Keras 3's
    `keras.src.trainers.trainer.Trainer`)."""

    optimizer = None
    loss = None
    loss_weights = None
    history = None
    stop_training = False
    _metrics = ()

    # Compile -------------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None):
        """Configures training.

        Args:
            optimizer: a name (`"sgd"`, `"adam"`, `"rmsprop"`), a config dict or an `Optimizer`.
            loss: a loss for every output: a name (`"mse"`,
                `"sparse_categorical_crossentropy"`, ...), a config dict or a `Loss`; or a
                list of them (None for an output without a loss) in output order; or a dict
                by output name naming every output.
            metrics: optional list of metric names (`"mae"`, `"accuracy"`, `"auc"`, ...),
                `pylstm.metrics.Metric` objects (`AUC(curve="PR")`, ...) or functions
                `(y_true, y_pred) -> per-sample values`, logged under the given name (else
                the metric's `name`, a function's `__name__`) and accumulated over each
                epoch through `update_state`/`result()`. With several outputs, as in Keras 3:
                a list with one entry per output (a metric, a list of metrics, or None), or a
                dict by output name; the logs name them `<output>_<metric>`.
            loss_weights: optional float (every output), list in output order, or dict by
                output name naming every output: the total loss is the sum of each output's
                loss times its weight (default 1).

        Raises:
            ValueError: for an unknown optimizer, loss or metric.
            TypeError: `metrics` not a list or dict of names or callables, `loss_weights`
                not a number, list or dict of numbers.
        """
        self.optimizer = optimizers.get(optimizer)
        if isinstance(loss, dict) and "class_name" not in loss:  # not one loss's config
            self.loss = {k: losses_module.get(v) for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            self.loss = [losses_module.get(v) for v in loss]
        else:
            self.loss = losses_module.get(loss)
        self._metrics = _resolve_metrics(metrics)
        _check_loss_weights(loss_weights)
        self.loss_weights = loss_weights

    def _check_compiled(self):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(
                "You must call `compile()` with a `loss` before training or evaluating the model."
            )

    def _targets(self):
        """The compiled loss, weight and metrics of each output, in output order."""
        names = list(self.output_names)
        n = len(names)
        per_loss = _per_output(self.loss, names, "loss")
        if all(loss is None for loss in per_loss):
            raise ValueError(f"`compile()` received no loss for any of the outputs {names}.")
        weights = [1.0] * n if self.loss_weights is None else _per_output(
            self.loss_weights, names, "loss_weights")
        if n == 1:
            per_metrics = [_flatten_metrics(self._metrics)]
        else:
            per_metrics = [[] if m is None else _flatten_metrics(m) for m in _per_output(
                self._metrics or None, names, "metrics", required=False)]
        several_losses = sum(loss is not None for loss in per_loss) > 1
        seen = collections.Counter()
        used = set()
        targets = []
        for name, loss, weight, metrics in zip(names, per_loss, weights, per_metrics):
            logged = []
            for metric_name, fn in metrics:
                key = f"{name}_{metric_name}" if n > 1 else metric_name
                # Each output accumulates in its own metric object, as Keras's.
                if id(fn) in used:
                    fn = metrics_module.clone(fn)
                used.add(id(fn))
                # Keras 3 numbers a repeated metric name: "mae", "mae_1", ...
                logged.append((key if not seen[key] else f"{key}_{seen[key]}", fn))
                seen[key] += 1
            loss_log = f"{name}_loss" if several_losses and loss is not None else None
            targets.append(_Target(name, loss, float(weight), loss_log, logged))
        return targets

    # Losses and steps ----------------------------------------------------------------

    def compute_loss(self, y, y_pred, mask=None, sample_weight=None):
        """The weighted sum of each output's loss (masked timesteps left out, as Keras) plus
        every penalty in `losses` (weight regularizers and the last call's activity
        regularizers).

        Args:
            y: the targets: an array for one output, else a list in output order or a dict by
                output name.
            y_pred: the predictions, structured as `y`.
            mask: None, or each output's `(B, T)` bool mask: an array for one output, else a
                list in output order (None for an output without a mask).
            sample_weight: None, or each output's sample weights (`(B,)`, or `(B, T)` for a
                sequence output), structured as `mask`.

        Returns:
            float.
        """
        names = list(self.output_names)
        ys = _flatten_structure(y, names, "y")
        preds = _flatten_structure(y_pred, names, "y_pred")

        def per_output(value):
            if value is None:
                return [None] * len(names)
            return [value] if len(names) == 1 and not isinstance(value, (list, tuple)) else \
                list(value)

        total = 0.0
        for target, yt, yp, m, sw in zip(self._targets(), ys, preds, per_output(mask),
                                         per_output(sample_weight)):
            if target.loss is not None:
                total += target.weight * target.loss(yt, yp, sample_weight=_fit_weight(sw, yp),
                                                     mask=m)
        return total + sum(self.losses)

    def _add_regularizer_gradients(self, factor=1.0):
        """Adds each weight regularizer's gradient, times `factor`, to its variable's
        `grad`."""
        for var in self.trainable_variables:
            regularizer = var.regularizer
            if regularizer is None:
                continue
            gradient = getattr(regularizer, "gradient", None)
            if gradient is None:
                raise TypeError(
                    f"The regularizer of variable '{var.name}' has no `gradient(value)` "
                    "method; pylstm has no autodiff, so regularizers must provide one."
                )
            penalty = gradient(var.value)
            var.grad += penalty if factor == 1.0 else penalty * factor
            var.grad_slices = None  # TensorFlow sums slices and a dense gradient densely

    def _compute_gradients_flat(self, targets, xs, ys, sample_weights, class_weight=None,
                                global_batch_size=None):
        """The forward and backward pass of one training step on validated arrays.

        Returns:
            `(gradients, logs, predictions, masks)`: `gradients` the trainable variables' own
            `grad` arrays (not copies; the gradients of the loss times the optimizer's
            `loss_scale_factor`, each `Variable.grad_slices` kept), or None when the loss is
            not finite or the gradients overflow on their way back (then `logs["loss"]` is
            that loss, or NaN); `logs` the batch's `loss` and logged output losses (floats,
            times `len(batch) / global_batch_size` when that is given); `predictions` and
            `masks` the forward pass's lists, in output order.
        """
        for var in self.weights:
            var.zero_grad()
        preds, masks = self._forward_flat(xs, training=True)
        if class_weight is not None:
            sample_weights = [_data.class_sample_weight(class_weight, ys[0], preds[0])]
        # The whole loss (outputs, activity and weight penalties) is scaled by the shard's
        # share of the global batch, and the gradients also by the optimizer's
        # loss_scale_factor, which its step divides back out (Keras's scale_loss).
        share = 1.0 if global_batch_size is None else len(xs[0]) / global_batch_size
        factor = share * (self.optimizer.loss_scale_factor or 1.0)
        total, grads, logs = 0.0, [], {}
        for target, yt, yp, mask, sw in zip(targets, ys, preds, masks, sample_weights):
            if target.loss is None:
                grads.append(None)
                continue
            value, grad = target.loss.value_and_gradient(yt, yp, sample_weight=_fit_weight(sw, yp),
                                                         mask=mask)
            total += target.weight * value
            grads.append(grad if target.weight == 1.0 else grad * target.weight)
            if target.loss_log:
                logs[target.loss_log] = value * share
        logs["loss"] = (total + sum(self.losses)) * share  # the penalties before the update
        # A diverging model gives no gradients from a NaN or infinite loss, or from gradients
        # that overflow on their way back (layers refuse them): Keras would write NaN into the
        # weights. The step logs a NaN loss instead, which TerminateOnNaN and the user see.
        if not np.isfinite(logs["loss"]):
            return None, logs, preds, masks
        try:
            self._backward_flat(grads)
        except NonFiniteError:
            logs["loss"] = float("nan")
            return None, logs, preds, masks
        variables = self.trainable_variables
        if factor != 1.0:
            for var in variables:
                var.grad *= factor
                if var.grad_slices is not None:
                    var.grad_slices = (var.grad_slices[0], var.grad_slices[1] * factor)
        self._add_regularizer_gradients(factor)
        return [var.grad for var in variables], logs, preds, masks

    def _local_gradients(self, targets, xs, ys, sample_weights, class_weight):
        return self._compute_gradients_flat(targets, xs, ys, sample_weights, class_weight)

    def _shard_gradients(self, xs, ys, sample_weights, class_weight, global_batch_size):
        """The worker's half of a distributed `_gradient_fn`: `_compute_gradients_flat` on a
        shard of the batch (lists of arrays as the seam receives them, cut along the samples)
        with copies of the gradients, which `pylstm.variable.add_gradients` sums over the
        shards to the batch's: an array per variable, or a `SlicedGradient` for one with row
        slices (an `Embedding`'s table), so that the step is `fit`'s.

        Returns:
            `(gradients or None, logs, predictions, masks)`, as the seam returns them.
        """
        self._ensure_built_flat([a.shape for a in xs])
        gradients, logs, preds, masks = self._compute_gradients_flat(
            self._targets(), xs, ys, sample_weights, class_weight, global_batch_size)
        if gradients is not None:
            gradients = [g.copy() if var.grad_slices is None
                         else SlicedGradient(g.copy(), *var.grad_slices)
                         for var, g in zip(self.trainable_variables, gradients)]
        return gradients, logs, preds, masks

    # fit's gradient seam (see `_train_step`); None is `_local_gradients`.
    _gradient_fn = None

    def _train_step(self, targets, xs, ys, sample_weights, class_weight=None):
        """One optimization step on validated arrays; returns `(losses, predictions, masks)`:
        the batch's `loss` and logged output losses (floats), and the forward pass's lists.
        `class_weight` (one output) replaces the sample weights by the batch's class
        weights.

        The step is `gradients, logs, predictions, masks = gradient_fn(targets, xs, ys,
        sample_weights, class_weight)`, then `_apply_gradients(gradients)`. `gradient_fn` is
        the model's `_gradient_fn` when set, else `_local_gradients`: the seam through which
        a distributed trainer (`pylstm.dask.fit`) runs `fit`, `train_on_batch`, callbacks
        and validation included, with gradients computed elsewhere, setting `_gradient_fn`
        on the model for the duration of the call. The seam's contract:

        - It is called once per batch with the batch's validated arrays: `xs` one array
          `(B, ...)` per input (input order, cast to the input's dtype), `ys` one per output,
          `sample_weights` one float64 array (`(B,)` or `(B, T)`) or None per output,
          `class_weight` None or a checked dict (one output); `targets` is `_targets()`
          (losses, loss weights, metrics), which a remote function may ignore.
        - It returns `gradients`: one array per `trainable_variables` entry, of its shape
          and dtype, the gradients of the whole batch as `compute_gradients` gives them
          (on each worker `_shard_gradients(xs_i, ys_i, sample_weights_i, class_weight,
          global_batch_size=B)` on its rows of every array, summed over the shards in
          sample order with `pylstm.variable.add_gradients`: an entry may be a
          `SlicedGradient`, which keeps an `Embedding`'s rows as `fit` keeps them), or
          None to skip the update (any shard returned None); `logs`: the dict of `"loss"`
          and each logged output loss, each summed over the shards; `predictions`: one
          array `(B, ...)` per output (the shards' concatenated in sample order); `masks`:
          one `(B, T)` bool mask or None per output (concatenated likewise). The metrics
          read `ys`, `predictions` and `masks`.
        - The update is skipped when `gradients` is None (the loss is logged as NaN unless
          it is already NaN or infinite) or `logs["loss"]` is not finite (pylstm's rule for
          a diverging model).
        """
        gradient_fn = self._gradient_fn or self._local_gradients
        gradients, logs, preds, masks = gradient_fn(targets, xs, ys, sample_weights, class_weight)
        if gradients is not None and np.isfinite(logs["loss"]):
            self._apply_gradients(gradients)
        elif np.isfinite(logs["loss"]):
            logs["loss"] = float("nan")
        return logs, preds, masks

    def _apply_gradients(self, gradients):
        """One optimizer step with `gradients` (checked), one per trainable variable: arrays
        or `SlicedGradient`s; a variable's own `grad` array passes as is, with its
        `grad_slices`."""
        variables = self.trainable_variables
        for var, gradient in zip(variables, gradients):
            if isinstance(gradient, SlicedGradient):
                var.grad[...] = gradient.dense
                var.grad_slices = (gradient.indices, gradient.values)
            elif gradient is not var.grad:
                var.grad[...] = gradient
                var.grad_slices = None
        self.optimizer.apply(variables)

    # Gradients -----------------------------------------------------------------------

    def compute_gradients(self, x, y, sample_weight=None, *, class_weight=None,
                          global_batch_size=None):
        """Returns the gradients of the loss on one batch without updating the weights: the
        first half of `train_on_batch` (Keras 3's `train_step` up to the gradient tape), for
        running the training step's halves on different machines.

        The loss is what `fit` minimizes: each output's loss (masked timesteps left out,
        sample weights applied, as in `fit`) times its loss weight, plus every penalty in
        `losses` (weight regularizers and the activity regularizers of this batch). The
        forward pass runs in training mode (dropout active, stateful layers advance, as in
        `train_on_batch`). The gradients are those of the loss times the optimizer's
        `loss_scale_factor` (Keras's `scale_loss`), which `apply_gradients` divides back out.

        With `global_batch_size=N`, the batch is taken as a shard of `B` samples of a global
        batch of `N` samples, and the whole loss (each output's, the activity penalties and
        the weight penalties) is multiplied by `B / N`: each output's mean divides its sum
        over the shard's samples by `N` samples' worth of entries instead of `B`
        (TensorFlow's `tf.nn.compute_average_loss(..., global_batch_size=N)`), and the
        penalties count `B / N` of their value (`tf.nn.scale_regularization_loss`), so that
        they are counted once over the shards. The gradients and logs of disjoint shards
        covering the global batch then sum to the global batch's, whatever the shards'
        sizes and sample weights (pylstm's losses divide the weighted sum by the number of
        entries, not by the sum of the weights). An output with a mask (Keras's
        `apply_mask`) takes the mean over its unmasked entries within each shard, as Keras
        does on each replica under `tf.distribute`: the sum equals the global batch's when
        every shard holds the same share of unmasked entries as of samples (e.g. equal
        shards with equal counts of unmasked timesteps), and is a shard-weighted mean of the
        masked means otherwise.

        To drive synchronous data parallelism with any engine (Ray, Spark, MPI): each
        worker holds a copy of the model (pickled) and, each step, the driver's weights
        (`set_weights`); it returns `compute_gradients` on its shard with
        `global_batch_size` set; the driver (or an MPI `allreduce`) sums the gradients over
        the workers and calls `apply_gradients` once.

        Args:
            x: the inputs of the batch (or shard): an array `(B, ...)` for one input, else a
                list in input order or a dict by input name.
            y: the targets, structured as `x` over the outputs.
            sample_weight: optional weights of each sample's loss, as in `fit`.
            class_weight: optional dict `class index -> weight` (one output), as in `fit`.
            global_batch_size: None (the batch is the whole batch), or int >= `B`: the
                samples of the global batch this batch is a shard of.

        Returns:
            `(gradients, logs)`: `gradients` a list of `np.ndarray`, one per
            `model.trainable_variables` entry in that order, of its shape and dtype (an
            `Embedding`'s table gradient dense, its rows' occurrences summed); `logs` a dict
            of floats: `"loss"` (penalties included) and, with several losses,
            `"<output>_loss"`, as `fit` logs them (times `B / N` with `global_batch_size`).
            When the loss is NaN or infinite, or the gradients overflow, `logs["loss"]` is
            NaN (or that loss) and every gradient is NaN, so that a sum over shards is too
            and `apply_gradients` refuses it.

        Raises:
            RuntimeError: if the model is not compiled.
            TypeError, ValueError: for data `train_on_batch` refuses, or a
                `global_batch_size` that is not an int >= the batch's samples.

        Example:
        >>> import numpy as np
        >>> from pylstm.layers import LSTM, Dense, Input
        >>> from pylstm.models import Sequential
        >>> model = Sequential([Input((5, 2)), LSTM(4, seed=0), Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(8, 5, 2)), rng.normal(size=(8, 1))
        >>> # on each worker (a Ray task, a Spark partition, an MPI rank): its shard
        >>> shards = [model.compute_gradients(x[i:i + 4], y[i:i + 4], global_batch_size=8)
        ...           for i in (0, 4)]
        >>> # on the driver: the sum is the whole batch's gradients; one step
        >>> total = [a + b for a, b in zip(shards[0][0], shards[1][0])]
        >>> whole, logs = model.compute_gradients(x, y)
        >>> all(np.allclose(t, w, atol=1e-6) for t, w in zip(total, whole))
        True
        >>> model.apply_gradients(total)
        1
        """
        self._check_compiled()
        class_weight, (xs, ys, sws) = self._weighted_batch(x, y, sample_weight, class_weight)
        if global_batch_size is not None:
            _check_positive_int(global_batch_size, "global_batch_size")
            if global_batch_size < len(xs[0]):
                raise ValueError(f"Argument `global_batch_size` must be at least the batch's "
                                 f"{len(xs[0])} samples, received {global_batch_size}.")
        self._ensure_built_flat([a.shape for a in xs])
        gradients, logs, _, _ = self._compute_gradients_flat(
            self._targets(), xs, ys, sws, class_weight, global_batch_size)
        variables = self.trainable_variables
        if gradients is None:
            return [np.full(v.shape, np.nan, v.dtype) for v in variables], logs
        return [g.copy() for g in gradients], logs

    def apply_gradients(self, gradients):
        """Takes one optimizer step on `model.trainable_variables` with `gradients`: the
        second half of `train_on_batch`, the update `fit` makes (the optimizer divides by its
        `loss_scale_factor`, accumulates, clips, decays the weights, keeps its moving
        average and applies the constraints, as in Keras 3's `optimizer.apply_gradients`).
        The gradients are dense: for an `Embedding`'s table the step is Keras's on JAX or
        PyTorch, where `fit` takes Keras's on TensorFlow (the looked-up rows apart), which
        differs for the optimizers that square the gradient (Adam, RMSprop, ...) when a row
        is looked up more than once in the batch.

        Args:
            gradients: a list of arrays, one per `model.trainable_variables` entry in that
                order and of its shape (cast to its dtype): `compute_gradients`' gradients,
                or their sum over the shards of a global batch.

        Returns:
            int, the optimizer's `iterations` after the step.

        Raises:
            RuntimeError: if the model is not compiled.
            ValueError: `gradients` not one array per trainable variable of its shape, or
                holding NaN or infinite values (a diverged shard: no update is made).
        """
        if self.optimizer is None:
            raise RuntimeError("You must call `compile()` before `apply_gradients()`.")
        variables = self.trainable_variables
        if not isinstance(gradients, (list, tuple)) or len(gradients) != len(variables):
            received = (f"{len(gradients)} items" if isinstance(gradients, (list, tuple))
                        else type(gradients).__name__)
            raise ValueError(f"Argument `gradients` must be a list of {len(variables)} arrays, "
                             f"one per trainable variable, received {received}.")
        arrays = []
        for i, (var, gradient) in enumerate(zip(variables, gradients)):
            array = np.asarray(gradient)
            if array.shape != var.shape:
                raise ValueError(f"Argument `gradients[{i}]` must have the shape {var.shape} "
                                 f"of variable '{var.name}', received {array.shape}.")
            if array.dtype.kind not in "biuf" or not np.all(np.isfinite(array)):
                raise ValueError(f"Argument `gradients[{i}]` (variable '{var.name}') must be "
                                 f"finite numbers, received NaN, infinite or non-numeric "
                                 f"values.")
            arrays.append(array)
        self._apply_gradients(arrays)
        return self.optimizer.iterations

    def _test_step(self, targets, xs, ys, sample_weights):
        """The losses of one batch in inference mode: `(losses, predictions, masks)`."""
        preds, masks = self._forward_flat(xs, training=False)
        logs = {"loss": 0.0}
        for target, yt, yp, mask, sw in zip(targets, ys, preds, masks, sample_weights):
            if target.loss is not None:
                value = target.loss(yt, yp, sample_weight=_fit_weight(sw, yp), mask=mask)
                logs["loss"] += target.weight * value
                if target.loss_log:
                    logs[target.loss_log] = value
        logs["loss"] += sum(self.losses)
        return logs, preds, masks

    # Fit, evaluate, predict ----------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Trains the model for `epochs - initial_epoch` epochs of mini-batch updates, as
        Keras 3's `Model.fit`.

        Args:
            x: the inputs, each a numeric array `(N, ...)` cast to its input's dtype: an array
                for one input, else a list in input order or a dict by input name. Or a source
                of batches, each `(x, y)` or `(x, y, sample_weight)` structured as these
                arguments: a `pylstm.utils.PyDataset`, a Python generator or iterator (drawn
                on across epochs), or another iterable (a new pass each epoch, e.g.
                `pylstm.utils.timeseries_dataset_from_array`'s batches); then `y` and
                `sample_weight` are not given and `batch_size` is ignored.
            y: the targets, each a numeric array `(N, ...)`: an array for one output, else a
                list in output order or a dict by output name.
            batch_size: int or None: samples per update (the last batch may be smaller);
                None is 32, or `ceil(N / steps_per_epoch)` when that is given.
            epochs: int, index of the last epoch (as in Keras, not a count when
                `initial_epoch > 0`).
            verbose: `"auto"` or 1 (a progress bar per epoch on stderr, `tqdm` when
                installed), 2 (one line per epoch), 0 (silent).
            callbacks: optional list of `pylstm.callbacks.Callback`; every hook is called
                where Keras calls it, and `model.stop_training = True` stops after the
                current batch.
            validation_split: float in `[0, 1)`; the *last* fraction of the samples (taken
                before shuffling, as in Keras: `floor(N * (1 - split))` are kept for
                training) is held out for validation. Arrays only.
            validation_data: optional `(x_val, y_val)` or `(x_val, y_val, val_sample_weight)`
                structured as `x`, `y` and `sample_weight`, or a source of batches as `x`;
                overrides `validation_split`.
            shuffle: bool, reshuffle the training samples (or a `PyDataset`'s batches) each
                epoch (from `pylstm.utils`'s generator, so `set_random_seed` makes training
                reproducible); ignored for generators and iterables.
            class_weight: optional dict `class index -> weight` (a model with one output):
                each sample's (or timestep's) loss is weighted by its class's weight (1 for a
                class not in the dict), the class being its label, its one-hot argmax, or its
                rounded value for targets with a last axis of 1, as Keras. Not with
                `sample_weight`.
            sample_weight: optional weights of each sample's loss: `(N,)`, or `(N, T)` (one
                per timestep) for a sequence output; with several outputs, a list in output
                order or a dict by output name, or one `(N,)` array for all of them. Combined
                with an output's mask as Keras combines them (masked timesteps weigh 0 and the
                rest are scaled by `timesteps / unmasked timesteps`); the loss is
                `sum(loss * weight) / count` (Keras's `sum_over_batch_size`). Metrics are not
                weighted (Keras's `metrics`).
            initial_epoch: int, the epoch to start from.
            steps_per_epoch: int or None: batches per epoch (required for an infinite source);
                None is one pass over the data.
            validation_steps: int or None: batches per validation (None: one pass).
            validation_batch_size: int or None: the validation batch size (default
                `batch_size`).
            validation_freq: int (validate after every `validation_freq`-th epoch) or a list
                of the 1-based epochs after which to validate.

        Returns:
            A `History` (also `model.history`) whose `.history` holds per-epoch `"loss"`, each
            metric, and with validation data `"val_loss"` and `"val_<metric>"`; with several
            outputs also `"<output>_loss"` and `"<output>_<metric>"`, as Keras 3.

        Raises:
            RuntimeError: if the model is not compiled.
            TypeError: for non-numeric data, a `class_weight` that is not a dict of classes to
                weights, or a callback that is not a `Callback`.
            ValueError: for empty, non-finite or mismatched data, missing or unknown names in
                a dict, a bad `validation_split`, `validation_freq` or step count, `y` or
                `sample_weight` given with a source of batches, or `class_weight` with
                `sample_weight` or several outputs.
        """
        self._check_compiled()
        for value, name in ((batch_size, "batch_size"), (steps_per_epoch, "steps_per_epoch"),
                            (validation_steps, "validation_steps"),
                            (validation_batch_size, "validation_batch_size")):
            _check_positive_int(value, name, optional=True)
        _check_positive_int(epochs, "epochs")
        _verbosity(verbose)
        _check_validation_freq(validation_freq)
        if class_weight is not None:
            class_weight = _data.check_class_weight(class_weight)
            if sample_weight is not None:
                raise ValueError("Arguments `sample_weight` and `class_weight` cannot be "
                                 "specified at the same time.")
            if len(self.output_names) > 1:
                raise ValueError("`class_weight` is only supported for models with a single "
                                 f"output; this model has {len(self.output_names)} outputs "
                                 f"{list(self.output_names)}.")
        train, val = self._fit_iterators(
            x, y, sample_weight, batch_size, steps_per_epoch, shuffle, validation_split,
            validation_data, validation_batch_size or batch_size, validation_steps)
        targets = self._targets()
        callbacks = _CallbackList(callbacks, self, verbose, epochs, train.num_batches,
                                  add_history=True)
        names = _log_names(targets)
        self.stop_training = False
        callbacks.call("on_train_begin")
        training_logs = None
        for epoch in range(initial_epoch, epochs):
            callbacks.call("on_epoch_begin", epoch)
            means, drawn = _RunningMeans(names), 0
            for step in train.steps():
                callbacks.call("on_train_batch_begin", step)
                batch = train.next_batch()
                if batch is None:
                    break
                xs, ys, sws = batch
                self._ensure_built_flat([a.shape for a in xs])
                means.add(targets, ys, *self._train_step(targets, xs, ys, sws, class_weight))
                drawn += 1
                callbacks.call("on_train_batch_end", step, means.result())
                if self.stop_training:
                    break
            train.end_epoch()
            if not drawn:
                warnings.warn(f"Epoch {epoch + 1} received no batch: the data ran out; "
                              f"training stops.", stacklevel=2)
                break
            logs = means.result()
            if val is not None and _should_validate(epoch, validation_freq):
                val_logs = self._test_loop(targets, val, callbacks)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callbacks.call("on_epoch_end", epoch, logs)
            training_logs = logs
            if self.stop_training:
                break
        if epochs > 0:
            # with use_ema, the weights become their moving averages (Keras's fit does this)
            self.optimizer.finalize_variable_values(self.trainable_variables)
        callbacks.call("on_train_end", training_logs)
        return self.history

    def _fit_iterators(self, x, y, sample_weight, batch_size, steps_per_epoch, shuffle,
                       validation_split, validation_data, val_batch_size, validation_steps):
        """`fit`'s training and validation `_data.EpochIterator`s (validation None without
        validation data)."""
        val = None
        if validation_data is not None:
            val_x, val_y, val_w = _unpack_validation_data(validation_data)
            val = self._epoch_iterator(val_x, val_y, val_w, val_batch_size, validation_steps,
                                       False, "validation_data")
        if _data.is_batch_source(x):
            if validation_split and val is None:
                raise ValueError("Argument `validation_split` is only supported for arrays, "
                                 f"received `x` of type {type(x).__name__}.")
            train = self._epoch_iterator(x, y, sample_weight, batch_size, steps_per_epoch,
                                         shuffle, "fit")
        else:
            arrays = self._validate_data(x, y, sample_weight)
            if validation_split and val is None:
                arrays, val_arrays = _data.split_validation(arrays, validation_split)
                val = _data.EpochIterator(_data.ArrayBatches(
                    val_arrays, val_batch_size, validation_steps, False), validation_steps,
                    _as_is)
            train = _data.EpochIterator(
                _data.ArrayBatches(arrays, batch_size, steps_per_epoch, shuffle),
                steps_per_epoch, _as_is)
        return train, val

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Returns the loss (weighted, penalties included) and metrics over `(x, y)`, in
        inference mode, as Keras 3's `Model.evaluate`.

        Args:
            x: the inputs, or a source of batches, as in `fit`.
            y: the targets, as in `fit`.
            batch_size: int or None (32).
            verbose: as in `fit`.
            sample_weight: optional weights of each sample's loss, as in `fit`.
            steps: int or None: the batches to evaluate (None: one pass).
            callbacks: optional list of `Callback`s (`on_test_*` hooks).
            return_dict: bool.

        Returns:
            The loss (float) when nothing else is logged, else a list: `[loss, *metrics]`, or
            with several outputs' losses `[loss, *output losses, *metrics]` (Keras 3's order);
            with `return_dict=True` a dict of the same values under their `fit` log names.

        Raises:
            RuntimeError, TypeError, ValueError: as in `fit`.
        """
        self._check_compiled()
        _check_positive_int(batch_size, "batch_size", optional=True)
        _check_positive_int(steps, "steps", optional=True)
        _verbosity(verbose)
        data = self._epoch_iterator(x, y, sample_weight, batch_size, steps, False, "evaluate")
        callbacks = _CallbackList(callbacks, self, verbose, 1, data.num_batches)
        logs = self._test_loop(self._targets(), data, callbacks)
        return _flatten_logs(logs, return_dict)

    def _test_loop(self, targets, data, callbacks):
        """One pass of `evaluate` (or of validation in `fit`) with its hooks; returns the
        logs."""
        means = _RunningMeans(_log_names(targets))
        self.stop_evaluating = False
        data.reset()
        callbacks.call("on_test_begin")
        for step in data.steps():
            callbacks.call("on_test_batch_begin", step)
            batch = data.next_batch()
            if batch is None:
                break
            xs, ys, sws = batch
            self._ensure_built_flat([a.shape for a in xs])
            means.add(targets, ys, *self._test_step(targets, xs, ys, sws))
            callbacks.call("on_test_batch_end", step, means.result())
            if self.stop_evaluating:
                break
        data.end_epoch()
        logs = means.result()
        callbacks.call("on_test_end", logs)
        return logs

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Returns the outputs for `x`, computed batch by batch in inference mode, as Keras
        3's `Model.predict`.

        Args:
            x: the inputs, as in `fit`; or a source of batches, each `x`, `(x,)` or a tuple
                whose first item is `x`.
            batch_size: int or None (32).
            verbose: as in `fit` (`"auto"`: a progress bar, as Keras).
            steps: int or None: the batches to predict (None: one pass).
            callbacks: optional list of `Callback`s (`on_predict_*` hooks; each batch's end
                gets `{"outputs": <the batch's outputs>}`).

        Returns:
            `np.ndarray` `(N, ...)` in the model's dtype for one output, else the outputs
            structured as the model's outputs (a list in output order by default), as Keras 3.

        Raises:
            TypeError, ValueError: for non-numeric, empty, non-finite or mismatched `x`, or a
                source that gives no batch.
        """
        _check_positive_int(batch_size, "batch_size", optional=True)
        _check_positive_int(steps, "steps", optional=True)
        _verbosity(verbose)
        data = self._epoch_iterator(x, None, None, batch_size, steps, False, "predict")
        callbacks = _CallbackList(callbacks, self, verbose, 1, data.num_batches)
        self.stop_predicting = False
        callbacks.call("on_predict_begin")
        batches = []
        for step in data.steps():
            callbacks.call("on_predict_batch_begin", step)
            batch = data.next_batch()
            if batch is None:
                break
            xs = batch[0]
            self._ensure_built_flat([a.shape for a in xs])
            outputs = self._forward_flat(xs, training=False)[0]
            batches.append(outputs)
            callbacks.call("on_predict_batch_end", step, {"outputs": self._pack_outputs(outputs)})
            if self.stop_predicting:
                break
        data.end_epoch()
        callbacks.call("on_predict_end")
        if not batches:
            raise ValueError("`predict` received no batch from `x`.")
        return self._pack_outputs([np.concatenate(out, axis=0) for out in zip(*batches)])

    # One batch -----------------------------------------------------------------------

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """Runs one optimization step on one batch, as Keras 3's `Model.train_on_batch`.

        Args:
            x: the inputs: an array `(B, ...)` for one input, else a list in input order or a
                dict by input name.
            y: the targets, structured as `x` over the outputs.
            sample_weight: optional weights of each sample's loss, as in `fit`.
            class_weight: optional dict `class index -> weight`, as in `fit`.
            return_dict: bool.

        Returns:
            The batch's loss (float; weighted, with penalties) and metrics, as `evaluate`
            returns them.

        Raises:
            RuntimeError, TypeError, ValueError: as in `fit`.
        """
        self._check_compiled()
        class_weight, (xs, ys, sws) = self._weighted_batch(x, y, sample_weight, class_weight)
        self._ensure_built_flat([a.shape for a in xs])
        targets = self._targets()
        means = _RunningMeans(_log_names(targets))
        means.add(targets, ys, *self._train_step(targets, xs, ys, sws, class_weight))
        return _flatten_logs(means.result(), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss and metrics of one batch in inference mode, as Keras 3's
        `Model.test_on_batch`; arguments and return value as `train_on_batch`.

        Raises:
            RuntimeError, TypeError, ValueError: as in `evaluate`.
        """
        self._check_compiled()
        xs, ys, sws = self._validate_data(x, y, sample_weight)
        self._ensure_built_flat([a.shape for a in xs])
        targets = self._targets()
        means = _RunningMeans(_log_names(targets))
        means.add(targets, ys, *self._test_step(targets, xs, ys, sws))
        return _flatten_logs(means.result(), return_dict)

    def predict_on_batch(self, x):
        """The outputs of one batch `x` in inference mode, structured as `predict` returns
        them (Keras 3's `Model.predict_on_batch`).

        Raises:
            TypeError, ValueError: as in `predict`.
        """
        (xs,) = self._validate_data(x, None, None, with_targets=False)
        self._ensure_built_flat([a.shape for a in xs])
        return self._pack_outputs(self._forward_flat(xs, training=False)[0])

    def _pack_outputs(self, ys):
        """The outputs as `predict` returns them: one array, or a list in output order."""
        return ys[0] if len(ys) == 1 else list(ys)

    def to_json(self, **kwargs):
        """The model's Keras 3 config as a JSON string (what `keras.Model.to_json` writes, and
        `config.json` in a `.keras` file), which `pylstm.models.model_from_json` and Keras's
        `keras.models.model_from_json` read.

        Args:
            **kwargs: passed to `json.dumps` (e.g. `indent`).

        Raises:
            ValueError: for a layer or activation that Keras 3 lacks.
        """
        return _formats.find("to_json", "")(self, **kwargs)

    def export(self, filepath, format="tf_saved_model", verbose=None, input_signature=None,
               **kwargs):
        """Writes the model as an artifact for inference, as `keras.Model.export` does; pylstm
        writes `format="onnx"`: `pylstm.onnx.export`'s graph (one ONNX `LSTM` node per LSTM,
        dynamic batch and time axes), which ONNX Runtime runs with pylstm's numbers.

        Args:
            filepath: str or path-like, the file to write.
            format: `"onnx"`. Keras's other formats (`"tf_saved_model"`, its default,
                `"openvino"`, `"litert"`, `"torch"`) need TensorFlow, OpenVINO or PyTorch and
                are refused.
            verbose: print `Saved artifact at '<filepath>'.` (default True, as Keras).
            input_signature: None: the inputs are the model's own, with dynamic batch and time
                axes.
            **kwargs: `opset_version` (int): the ONNX opset, as Keras's argument of that name
                (default: the newest the installed `onnx` and `onnxruntime` both run).

        Raises:
            ImportError: the `onnx` package is missing (`pip install pylstm[onnx]`).
            ValueError: another `format`, an `input_signature`, an unknown keyword argument, or
                what `pylstm.onnx.export` refuses (a layer ONNX cannot express faithfully).
        """
        if format != "onnx":
            raise ValueError(f"Argument `format` must be 'onnx', received {format!r}: pylstm "
                             f"writes ONNX files; Keras's other formats need TensorFlow, "
                             f"OpenVINO or PyTorch.")
        if input_signature is not None:
            raise ValueError("Argument `input_signature` must be None: pylstm exports the "
                             "model's own inputs with dynamic batch and time axes.")
        unknown = sorted(set(kwargs) - {"opset_version"})
        if unknown:
            raise ValueError(f"Unknown keyword arguments for format='onnx': {unknown}; "
                             f"expected `opset_version`.")
        # The exporter's module alone: pylstm.onnx's `load` builds models (one-way imports).
        from pylstm.onnx import _export

        _export.export(self, filepath, opset=kwargs.get("opset_version"))
        if verbose is None or verbose:
            print(f"Saved artifact at '{filepath}'.")

    # Data ----------------------------------------------------------------------------

    @property
    def _output_dtypes(self):
        """The dtype each output's targets are cast to: the model's."""
        return [np.dtype(self.dtype)] * len(self.output_names)

    def _validate_inputs(self, x, argument):
        """`x` flattened to input order and validated: a list of `(label, array)`."""
        return [(label, _validate_array(value, label, dtype)) for (label, value), dtype in zip(
            _flatten_named(x, list(self.input_names), argument, "input"), self._input_dtypes)]

    def _validate_data(self, x, y, sample_weight, with_targets=True,
                       labels=("x", "y", "sample_weight")):
        """The arrays of `x` (and of `y` and `sample_weight`), validated and of one sample
        count: `[xs]`, or `[xs, ys, sample weights]` with a weight array or None per
        output."""
        xs = self._validate_inputs(x, labels[0])
        if not with_targets:
            _check_same_samples(xs)
            return [[a for _, a in xs]]
        ys = [(label, _validate_array(value, label, dtype)) for (label, value), dtype in zip(
            _flatten_named(y, list(self.output_names), labels[1], "output"),
            self._output_dtypes)]
        sws = self._validate_sample_weight(sample_weight, labels[2])
        _check_same_samples(xs + ys + [pair for pair in sws if pair[1] is not None])
        return [[a for _, a in xs], [a for _, a in ys], [w for _, w in sws]]

    def _weighted_batch(self, x, y, sample_weight, class_weight):
        """`(class_weight checked, [xs, ys, sample weights])` of one batch (`train_on_batch`,
        `compute_gradients`): the two kinds of weights exclude each other."""
        if class_weight is not None:
            class_weight = _data.check_class_weight(class_weight)
            if sample_weight is not None:
                raise ValueError("Arguments `sample_weight` and `class_weight` cannot be "
                                 "specified at the same time.")
        return class_weight, self._validate_data(x, y, sample_weight)

    def _validate_sample_weight(self, sample_weight, argument):
        """One `(label, float64 array or None)` per output (Keras's structures: one array for
        one output; a list or dict, or one `(N,)` array shared, for several)."""
        names = list(self.output_names)
        if sample_weight is None:
            return [(argument, None)] * len(names)
        if len(names) > 1 and not isinstance(sample_weight, (list, tuple, dict)):
            weights = _validate_array(sample_weight, argument, _WEIGHT_DTYPE)
            if not (weights.ndim == 1 or (weights.ndim == 2 and weights.shape[1] == 1)):
                raise ValueError(f"For a model with several outputs, a single `{argument}` "
                                 f"array must hold one weight per sample (shape (N,)), "
                                 f"received shape {weights.shape}; pass one array per output "
                                 f"for other shapes.")
            return [(argument, weights.reshape(len(weights)))] * len(names)
        return [(label, None if value is None else _validate_array(value, label, _WEIGHT_DTYPE))
                for label, value in _flatten_named(sample_weight, names, argument, "output")]

    def _epoch_iterator(self, x, y, sample_weight, batch_size, steps, shuffle, caller):
        """An `_data.EpochIterator` over `x` (arrays or a source of batches) whose batches are
        `[xs, ys, sample weights]` (`[xs]` for `predict`)."""
        with_targets = caller != "predict"
        argument = "validation_data" if caller == "validation_data" else "x"
        if not _data.is_batch_source(x):
            labels = (("validation_data[0]", "validation_data[1]", "validation_data[2]")
                      if caller == "validation_data" else ("x", "y", "sample_weight"))
            arrays = self._validate_data(x, y, sample_weight, with_targets, labels)
            return _data.EpochIterator(_data.ArrayBatches(arrays, batch_size, steps, shuffle),
                                       steps, _as_is)
        for value, name in ((y, "y"), (sample_weight, "sample_weight")):
            if value is not None:
                raise ValueError(f"When providing `{argument}` as a {type(x).__name__}, "
                                 f"`{name}` should not be passed: it is part of each batch.")

        def standardize(batch):
            bx, by, bw = _data.unpack(batch)
            if not with_targets:
                return self._validate_data(bx, None, None, False, ("batch x",))
            if by is None:
                raise ValueError(f"Each batch of `{argument}` must hold targets: `(x, y)` or "
                                 f"`(x, y, sample_weight)`, received `x` alone.")
            return self._validate_data(bx, by, bw, True,
                                       ("batch x", "batch y", "batch sample_weight"))

        return _data.EpochIterator(_data.IterableBatches(x, shuffle), steps, standardize)


class _CallbackList:
    """Keras's `CallbackList`: the given callbacks, then a `History` in `fit` and the progress
    bar unless `verbose` is 0 (each unless given), every one told the model and the
    parameters (`verbose`, `epochs`, `steps`)."""

    def __init__(self, callbacks, model, verbose, epochs, steps, add_history=False):
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"Argument `callbacks` must hold `pylstm.callbacks.Callback` "
                                f"instances, received {cb!r:.100}.")
        if add_history:
            history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
            if history is None:
                history = History()
                self.callbacks.append(history)
            model.history = history
        if _verbosity(verbose) != 0 and not any(isinstance(cb, ProgressBar)
                                                for cb in self.callbacks):
            self.callbacks.append(ProgressBar())
        params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)


def _as_is(batch):
    return batch


def _unpack_validation_data(validation_data):
    """`(x, y, sample_weight)` of `validation_data`: a tuple or list of 2 or 3, or a source of
    batches (Keras's `unpack_x_y_sample_weight`)."""
    if _data.is_batch_source(validation_data):
        return validation_data, None, None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("Argument `validation_data` must be a tuple (x_val, y_val) or "
                         "(x_val, y_val, val_sample_weight), or a source of batches, received "
                         f"{type(validation_data).__name__}"
                         + (f" of {len(validation_data)} items."
                            if isinstance(validation_data, (tuple, list)) else "."))
    return tuple(validation_data) + (None,) * (3 - len(validation_data))


def _should_validate(epoch, validation_freq):
    """Whether `fit` validates after (0-based) `epoch`, as Keras's `_should_eval`."""
    if isinstance(validation_freq, list):
        return epoch + 1 in validation_freq
    return (epoch + 1) % validation_freq == 0


def _check_validation_freq(validation_freq):
    if isinstance(validation_freq, list):
        return
    if isinstance(validation_freq, bool) or not isinstance(validation_freq, (int, np.integer)) \
            or validation_freq < 1:
        raise ValueError(f"Argument `validation_freq` must be a positive int or a list of "
                         f"epochs, received {validation_freq!r:.100}.")


def _fit_weight(sample_weight, y_pred):
    """Sample weights with Keras's trailing axis of 1 dropped where the per-sample losses
    (`y_pred.shape[:-1]`) lack it."""
    if sample_weight is not None and sample_weight.ndim == np.ndim(y_pred) \
            and sample_weight.shape[-1] == 1:
        return sample_weight[..., 0]
    return sample_weight


def _flatten_logs(logs, return_dict):
    """`logs` as `evaluate` returns them: the dict, one float, or a list in log order."""
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


# Argument structure ----------------------------------------------------------------------


def _per_output(value, names, argument, required=True):
    """A compile argument given once for all outputs, as a list in output order or as a dict by
    output name, as one entry per output (None for names a dict leaves out when not
    `required`)."""
    if isinstance(value, dict):
        _check_keys(value, names, argument, "output", required)
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"Argument `{argument}` must have one entry per output "
                             f"({len(names)}: {names}), received {len(value)}.")
        return list(value)
    return [value] * len(names)


def _check_keys(value, names, argument, kind, required=True):
    unknown = [k for k in value if k not in names]
    missing = [n for n in names if n not in value] if required else []
    if unknown or missing:
        problems = ([f"unknown keys {unknown}"] if unknown else []) + (
            [f"missing keys {missing}"] if missing else [])
        raise ValueError(f"Argument `{argument}` is a dict with {' and '.join(problems)}; the "
                         f"model's {kind} names are {names}.")


def _flatten_named(value, names, argument, kind):
    """`x` or `y` as `(label, value)` pairs in input or output order; the label names the value
    in errors (`x`, `x[1]`, `x['tokens']`)."""
    if isinstance(value, dict):
        _check_keys(value, names, argument, kind)
        return [(f"{argument}['{name}']", value[name]) for name in names]
    if len(names) == 1:
        # A one-element list holding an array is a list of inputs; a nested list of numbers is
        # the data itself.
        if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(
                value[0], np.ndarray):
            return [(argument, value[0])]
        return [(argument, value)]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"Argument `{argument}` must be a list (in {kind} order) or a dict "
                         f"keyed by {kind} name for a model with {len(names)} {kind}s {names}, "
                         f"received {type(value).__name__}.")
    if len(value) != len(names):
        raise ValueError(f"Argument `{argument}` must hold {len(names)} arrays, one per {kind} "
                         f"{names}, received {len(value)}.")
    return [(f"{argument}[{i}]", v) for i, v in enumerate(value)]


def _flatten_structure(value, names, argument):
    """Arrays given as an array, a list in output order or a dict by output name, as a list."""
    if isinstance(value, dict):
        _check_keys(value, names, argument, "output")
        return [value[name] for name in names]
    if len(names) == 1 and not isinstance(value, (list, tuple)):
        return [value]
    if len(value) != len(names):
        raise ValueError(f"Argument `{argument}` must hold {len(names)} arrays, one per output "
                         f"{names}, received {len(value)}.")
    return list(value)


def _resolve_metrics(metrics):
    """`compile`'s `metrics` with each name or callable replaced by a `_Metric`, the structure
    kept (a list, lists in a list, or a dict)."""
    if metrics is None:
        return []
    if not isinstance(metrics, (list, tuple, dict)):
        raise TypeError(f"Argument `metrics` must be a list of metric names or callables, "
                        f"received {type(metrics).__name__}.")

    def resolve(m, nested):
        if m is None and nested:
            return None
        if isinstance(m, (list, tuple)) and nested:
            return [resolve(item, False) for item in m]
        if not (isinstance(m, (str, dict)) or callable(m)):
            raise TypeError(f"Argument `metrics` must hold metric names or callables (`Metric` "
                            f"objects or functions), received {m!r}.")
        metric = metrics_module.get(m)
        return _Metric(m if isinstance(m, str) else metric.name, metric)

    if isinstance(metrics, dict):
        return {k: resolve(v, True) for k, v in metrics.items()}
    return [resolve(m, True) for m in metrics]


def _flatten_metrics(metrics):
    """Every `_Metric` in a resolved metrics structure, in order."""
    if isinstance(metrics, _Metric):
        return [metrics]
    items = metrics.values() if isinstance(metrics, dict) else metrics
    return [pair for item in items if item is not None for pair in _flatten_metrics(item)]


def _check_loss_weights(loss_weights):
    def number(v):
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    values = (loss_weights.values() if isinstance(loss_weights, dict) else loss_weights
              if isinstance(loss_weights, (list, tuple)) else [loss_weights])
    if loss_weights is not None and not all(number(v) for v in values):
        raise TypeError(f"Argument `loss_weights` must be a float, or a list or dict of floats "
                        f"(one per output), received {loss_weights!r:.200}.")


# Logs ------------------------------------------------------------------------------------


def _log_names(targets):
    """The log names in Keras 3's order: the loss, each output's loss, then the metrics."""
    return (["loss"] + [t.loss_log for t in targets if t.loss_log]
            + [name for t in targets for name, _ in t.metrics])


class _RunningMeans:
    """The logs of an epoch (or an evaluation), as Keras's trainer keeps them: the losses
    averaged weighted by batch size (Keras's `Mean` of the loss); each metric reset before the
    first batch, updated with every batch through `update_state` and logged as its `result()`.
    An output's mask reaches the metrics that read it (`MeanMetricWrapper`s, which Keras gives
    the mask carried by `y_pred`), so that masked timesteps count for nothing there."""

    def __init__(self, names):
        self.names = list(names)
        self.sums = dict.fromkeys(self.names, 0.0)
        self.weights = dict.fromkeys(self.names, 0.0)
        self.metrics = None

    def add(self, targets, ys, losses, preds, masks):
        """Adds one batch: `losses` the batch's loss values (floats) by log name, `ys`, `preds`
        and `masks` its targets, predictions and output masks in output order."""
        if self.metrics is None:
            self.metrics = {name: metric for t in targets for name, metric in t.metrics}
            for metric in self.metrics.values():
                metric.reset_state()
        n = len(preds[0])
        for name, value in losses.items():
            self.sums[name] += value * n
            self.weights[name] += n
        for target, yt, yp, mask in zip(targets, ys, preds, masks):
            for _, metric in target.metrics:
                if mask is not None and isinstance(metric, metrics_module.MeanMetricWrapper):
                    metric.update_state(yt, yp, mask=mask)
                else:
                    metric.update_state(yt, yp)

    def result(self):
        metrics = self.metrics or {}
        return {name: metrics[name].result() if name in metrics
                else self.sums[name] / self.weights[name] if self.weights[name] else 0.0
                for name in self.names}


# Validation ------------------------------------------------------------------------------


def _validate_array(a, name, dtype):
    """`a` as a numeric array of at least one sample, cast to `dtype` (an integer input takes
    integer values only), without NaN or inf."""
    if a is None:
        raise ValueError(f"Argument `{name}` is required.")
    try:
        arr = np.asarray(a)
    except ValueError as e:
        raise ValueError(f"Argument `{name}` could not be converted to an array: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"Argument `{name}` must be a numeric array, received dtype {arr.dtype}."
        )
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(
            f"Argument `{name}` must hold at least one sample, received shape {arr.shape}."
        )
    if dtype.kind in "iu":
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"Argument `{name}` contains NaN or infinite values.")
            if np.any(arr != np.round(arr)):
                raise ValueError(f"Argument `{name}` feeds an input of dtype {dtype} and must "
                                 f"hold integers, received non-integer values.")
        return arr.astype(dtype, copy=False)
    with np.errstate(over="ignore"):  # an overflow to inf is reported just below
        arr = arr.astype(dtype, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"Argument `{name}` contains NaN or infinite values (after casting to {dtype})."
        )
    return arr


def _check_same_samples(labelled):
    counts = [len(a) for _, a in labelled]
    if len(set(counts)) > 1:
        labels = [f"`{label}`" for label, _ in labelled]
        raise ValueError(
            f"Arguments {', '.join(labels[:-1])} and {labels[-1]} must have the same number of "
            f"samples, received {', '.join(map(str, counts[:-1]))} and {counts[-1]}."
        )


def _check_positive_int(value, name, optional=False):
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Argument `{name}` must be a positive int, received {value!r}.")


def _verbosity(verbose):
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    try:
        return int(verbose)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"Argument `verbose` must be 'auto' or an int (0 silent, 1 progress "
                         f"bar, 2 one line per epoch), received {verbose!r:.100}.") from e
