"""Merge layers: several inputs in, one output out (Keras 3's `keras.layers.Concatenate`, `Add`,
`Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum` and `Dot`).

Design:
    A merge layer is called on a list of arrays and returns one array; `backward(grad_outputs)`
    returns a list with one gradient per input, each of its input's shape. Merge layers have
    no weights.

    Shapes follow Keras's `Merge`: the inputs share their batch size; the elementwise merges
    broadcast dimensions of size 1, and an input of lower rank gains size-1 axes after the
    batch axis (so `(B, D)` merges with `(B, T, D)`); a dimension that is None in
    `compute_output_shape` is unknown, and stays None in the output. The backward pass sums the
    gradient over the axes an input was broadcast along.

    Masks (`(B, T)` bool, one per input or None): the output mask is the OR of the input masks,
    None unless every input has one (Keras's `Merge.compute_mask`); `Concatenate` counts an
    unmasked input as all True and `Dot` returns no mask. Keras also computes with the masks
    attached to the input tensors in `Multiply` (masked entries count as 1, and entries masked in
    every input give 0), `Maximum` and `Minimum` (masked entries are left out; an entry masked
    in every input takes the first input's value); these layers take the masks as their `mask`
    argument and do the same. As in Keras, inputs of different ranks drop the masks from the
    computation (not from the output mask).

    Gradients follow TensorFlow's: `Maximum` and `Minimum` send the whole gradient of an entry
    to the first input (in list order) holding the extreme value, as `tf.maximum`'s gradient
    does for ties.
"""

import numpy as np

from pylstm.layers.layer import Layer

# Keras's `backend.epsilon()`: `Dot(normalize=True)` divides by at least this norm.
_EPSILON = 1e-7


class _Merge(Layer):
    """Base of the elementwise merge layers (Keras 3's `keras.src.layers.merging.Merge`).

    Subclasses implement `_merge(xs, masks)` -> `(output, cache)` on inputs of equal rank, and
    `_merge_backward(grad, cache)` -> one gradient per input, of the output's shape (or of the
    input's: the base class sums over the broadcast axes).

    Args:
        **kwargs: base `Layer` arguments.
    """

    supports_masking = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._cache = None

    # Shapes ----------------------------------------------------------------------------------

    def _shape_list(self, input_shape):
        """`input_shape` as a list of shape tuples; raises unless it is a list of shapes."""
        if not (isinstance(input_shape, (list, tuple)) and input_shape and
                all(isinstance(s, (list, tuple)) for s in input_shape)):
            raise ValueError(f"{type(self).__name__} layer '{self.name}' must be called on a list "
                             f"of inputs, received input_shape={input_shape!r:.200}.")
        return [tuple(s) for s in input_shape]

    def _batch_size(self, shapes):
        """The one batch size of `shapes` (None if unknown); raises if they differ."""
        sizes = {s[0] for s in shapes if s} - {None}
        if len(sizes) > 1:
            raise ValueError(f"{type(self).__name__} layer '{self.name}' cannot merge inputs with "
                             f"different batch sizes, received shapes {shapes}.")
        return sizes.pop() if sizes else None

    @staticmethod
    def _elementwise_shape(a, b):
        """Keras's elementwise output shape of two shapes without their batch axis (aligned
        on the right, size 1 broadcast, None unknown); None if they do not broadcast."""
        if len(a) < len(b):
            a, b = b, a
        lead = len(a) - len(b)
        out = list(a[:lead])
        for i, j in zip(a[lead:], b):
            if i is None or j is None:
                out.append(None)
            elif i == 1 or i == j:
                out.append(j)
            elif j == 1:
                out.append(i)
            else:
                return None
        return tuple(out)

    def _check_shapes(self, shapes):
        """Raises for shapes this layer cannot merge (before computing anything)."""

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        super().build(self._shape_list(input_shape))

    def compute_output_shape(self, input_shape):
        """The output shape of inputs of `input_shape` (a list of shapes with the batch axis).

        Raises:
            ValueError: not a list of shapes, different batch sizes, or shapes that do not
                broadcast.
        """
        shapes = self._shape_list(input_shape)
        self._check_shapes(shapes)
        batch = self._batch_size(shapes)
        out = shapes[0][1:]
        for shape in shapes[1:]:
            out = self._elementwise_shape(out, shape[1:])
            if out is None:
                raise ValueError(f"{type(self).__name__} layer '{self.name}': inputs have "
                                 f"incompatible shapes, received shapes {shapes}.")
        return (batch,) + out

    # Masks -----------------------------------------------------------------------------------

    def _mask_list(self, inputs, mask):
        """`mask` as a list of one mask (or None) per input; raises unless it is one."""
        if not isinstance(mask, (list, tuple)):
            raise ValueError(f"{type(self).__name__} layer '{self.name}': argument `mask` must be "
                             f"a list with one mask (or None) per input, received "
                             f"{type(mask).__name__}.")
        if len(mask) != len(inputs):
            raise ValueError(f"{type(self).__name__} layer '{self.name}': argument `mask` must "
                             f"have one entry per input ({len(inputs)}), received {len(mask)}.")
        return [None if m is None else np.asarray(m, dtype=bool) for m in mask]

    def compute_mask(self, inputs, mask=None):
        """The OR of the input masks, `(B, T)` bool; None unless every input has one (Keras's
        `Merge.compute_mask`).

        Raises:
            ValueError: `mask` is not a list of one entry per input.
        """
        if mask is None:
            return None
        masks = self._mask_list(inputs, mask)
        if any(m is None for m in masks):
            return None
        output = masks[0]
        for m in masks[1:]:
            output = output | m  # broadcasts, as Keras's `ops.logical_or`
        return output

    # Forward and backward --------------------------------------------------------------------

    def _arrays(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{type(self).__name__} layer '{self.name}' must be called on a list "
                             f"of arrays, received {type(inputs).__name__}.")
        return [np.asarray(x, dtype=self.dtype) for x in inputs]

    def call(self, inputs, training=False, mask=None):
        """Merges `inputs` (a list of arrays `(B, ...)`); `mask` is None or a list of `(B, T)`
        bool masks (or None), one per input."""
        xs = self._arrays(inputs)
        shapes = [x.shape for x in xs]
        self.compute_output_shape(shapes)
        masks = [None] * len(xs) if mask is None else self._mask_list(xs, mask)
        rank = max(x.ndim for x in xs)
        if any(x.ndim != rank for x in xs):
            # Keras expands the lower ranks into new tensors, which carry no mask.
            xs = [x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]) for x in xs]
            masks = [None] * len(xs)
        output, cache = self._merge(xs, masks)
        self._cache = (shapes, cache) if training else None
        return output

    def backward(self, grad_outputs):
        """Returns the list of `d loss / d inputs`, one per input and of its shape."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__} layer '{self.name}': backward() needs a "
                               f"call(training=True) first.")
        shapes, cache = self._cache
        grads = self._merge_backward(np.asarray(grad_outputs, dtype=self.dtype), cache)
        return [_sum_to_shape(g, shape) for g, shape in zip(grads, shapes)]

    def _merge(self, xs, masks):
        raise NotImplementedError

    def _merge_backward(self, grad, cache):
        raise NotImplementedError


def _sum_to_shape(grad, shape):
    """`grad` summed over the axes along which an input of `shape` was broadcast (its size-1
    axes and the axes its lower rank gained after the batch axis), reshaped to `shape`."""
    aligned = shape[:1] + (1,) * (grad.ndim - len(shape)) + shape[1:]
    axes = tuple(i for i, (n, g) in enumerate(zip(aligned, grad.shape)) if n == 1 and g != 1)
    if axes:
        return grad.sum(axis=axes, keepdims=True).reshape(shape)
    # a copy: inputs may share one gradient (Add's), and whoever receives it may add into it
    return grad.reshape(shape).copy()


def _expand_mask(mask, shape, layer):
    """A `(B, T)` mask broadcast over the feature axis to an input of `shape`, as Keras's
    `broadcast_to(expand_dims(mask, -1), shape)`."""
    try:
        return np.broadcast_to(mask[..., None], shape)
    except ValueError:
        raise ValueError(f"{type(layer).__name__} layer '{layer.name}': a mask of shape "
                         f"{mask.shape} does not fit its input of shape {shape}.") from None


class Add(_Merge):
    """Adds its inputs elementwise (Keras 3's `keras.layers.Add`).

    Args:
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of arrays `(B, ...)` that broadcast together (see the module docstring).
        mask: None or a list of `(B, T)` bool arrays (or None), one per input.

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype.

    Raises:
        ValueError: `inputs` is not a list, or its shapes do not broadcast (the error names the
            layer and the shapes).

    Example:

    >>> import numpy as np
    >>> Add()([np.ones((2, 3)), np.full((2, 3), 2.0)]).tolist()
    [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
    """

    def _merge(self, xs, masks):
        output = xs[0]
        for x in xs[1:]:
            output = output + x
        return output, len(xs)

    def _merge_backward(self, grad, count):
        return [grad] * count


class Subtract(_Merge):
    """`inputs[0] - inputs[1]` elementwise (Keras 3's `keras.layers.Subtract`).

    Args:
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of two arrays `(B, ...)` that broadcast together.
        mask: None or a list of two `(B, T)` bool arrays (or None).

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype.

    Raises:
        ValueError: `inputs` is not a list of exactly two arrays, or their shapes do not
            broadcast.

    Example:

    >>> import numpy as np
    >>> Subtract()([np.ones((1, 2)), np.full((1, 2), 3.0)]).tolist()
    [[-2.0, -2.0]]
    """

    def _check_shapes(self, shapes):
        if len(shapes) != 2:
            raise ValueError(f"Subtract layer '{self.name}' must be called on exactly 2 inputs, "
                             f"received {len(shapes)} inputs of shapes {shapes}.")

    def _merge(self, xs, masks):
        return xs[0] - xs[1], None

    def _merge_backward(self, grad, cache):
        return [grad, -grad]


class Multiply(_Merge):
    """Multiplies its inputs elementwise (Keras 3's `keras.layers.Multiply`).

    With masks, as Keras: a masked entry of an input counts as 1; when every input has a mask,
    the entries masked in all of them are 0.

    Args:
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of arrays `(B, ...)` that broadcast together.
        mask: None or a list of `(B, T)` bool arrays (or None), one per input.

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype.

    Raises:
        ValueError: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> import numpy as np
    >>> Multiply()([np.full((1, 2), 2.0), np.full((1, 2), 3.0)]).tolist()
    [[6.0, 6.0]]
    """

    def _merge(self, xs, masks):
        every_masked = all(m is not None for m in masks)
        factors, kept, keep = [], [], None
        for x, m in zip(xs, masks):
            if m is not None:
                m = _expand_mask(m, x.shape, self)
                x = np.where(m, x, np.ones((), x.dtype))
                if every_masked:
                    keep = m if keep is None else keep | m
            factors.append(x)
            kept.append(m)
        output = factors[0]
        for x in factors[1:]:
            output = output * x
        if keep is not None:
            output = np.where(keep, output, np.zeros((), output.dtype))
        return output, (factors, kept, keep)

    def _merge_backward(self, grad, cache):
        factors, kept, keep = cache
        if keep is not None:
            grad = np.where(keep, grad, np.zeros((), grad.dtype))
        grads = []
        for i, m in enumerate(kept):
            g = grad
            for j, x in enumerate(factors):
                if j != i:
                    g = g * x
            grads.append(g if m is None else np.where(m, g, np.zeros((), g.dtype)))
        return grads


class Average(_Merge):
    """The elementwise mean of its inputs (Keras 3's `keras.layers.Average`).

    Args:
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of arrays `(B, ...)` that broadcast together.
        mask: None or a list of `(B, T)` bool arrays (or None), one per input.

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype.

    Raises:
        ValueError: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> import numpy as np
    >>> Average()([np.ones((1, 2)), np.full((1, 2), 3.0)]).tolist()
    [[2.0, 2.0]]
    """

    def _merge(self, xs, masks):
        output = xs[0]
        for x in xs[1:]:
            output = output + x
        return output / np.asarray(len(xs), output.dtype), len(xs)

    def _merge_backward(self, grad, count):
        return [grad / np.asarray(count, grad.dtype)] * count


class _Extremum(_Merge):
    """`Maximum` and `Minimum`: Keras's `_apply_merge_op_and_or_mask`, run on values and on
    the index of the input each entry comes from (its gradient goes there)."""

    def _first_wins(self, output, x):
        """Where the accumulated output is kept over `x` (ties included, as tf's gradient)."""
        raise NotImplementedError

    def _merge(self, xs, masks):
        output, mask = xs[0], masks[0]
        source = np.zeros(output.shape, np.intp)
        if mask is not None:
            mask = _expand_mask(mask, output.shape, self)
        for i, (x, m) in enumerate(zip(xs[1:], masks[1:]), start=1):
            x_source = np.intp(i)
            if m is not None:
                m = _expand_mask(m, x.shape, self)
                x, x_source = np.where(m, x, output), np.where(m, x_source, source)
            if mask is not None:
                output, source = np.where(mask, output, x), np.where(mask, source, x_source)
            mask = None if m is None or mask is None else mask | m
            first = self._first_wins(output, x)
            output, source = np.where(first, output, x), np.where(first, source, x_source)
        return output, (np.broadcast_to(source, output.shape), len(xs))

    def _merge_backward(self, grad, cache):
        source, count = cache
        zero = np.zeros((), grad.dtype)
        return [np.where(source == i, grad, zero) for i in range(count)]


class Maximum(_Extremum):
    """The elementwise maximum of its inputs (Keras 3's `keras.layers.Maximum`).

    With masks, as Keras: an input's masked entries are left out of the maximum; an entry
    masked in every input (that has a mask) takes the first input's value. An entry's gradient
    goes to the first input holding the maximum (TensorFlow's gradient of `tf.maximum`).

    Args:
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of arrays `(B, ...)` that broadcast together.
        mask: None or a list of `(B, T)` bool arrays (or None), one per input.

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype.

    Raises:
        ValueError: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> import numpy as np
    >>> Maximum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])]).tolist()
    [[3.0, 5.0]]
    """

    def _first_wins(self, output, x):
        return output >= x


class Minimum(_Extremum):
    """The elementwise minimum of its inputs (Keras 3's `keras.layers.Minimum`).

    Masks and gradients as `Maximum`'s, with the minimum.

    Args:
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of arrays `(B, ...)` that broadcast together.
        mask: None or a list of `(B, T)` bool arrays (or None), one per input.

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype.

    Raises:
        ValueError: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> import numpy as np
    >>> Minimum()([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]])]).tolist()
    [[1.0, 2.0]]
    """

    def _first_wins(self, output, x):
        return output <= x


class Concatenate(_Merge):
    """Concatenates its inputs along `axis` (Keras 3's `keras.layers.Concatenate`).

    Args:
        axis: int, the axis to concatenate along (the batch axis is 0; negative counts from
            the end).
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of arrays of one rank whose shapes agree except along `axis`.
        mask: None or a list of `(B, T)` bool arrays (or None), one per input; not used by the
            computation.

    Returns:
        `np.ndarray` of the layer's dtype, the inputs' shape with the sizes along `axis` added.

    Raises:
        TypeError: `axis` is not an int.
        ValueError: `inputs` is not a list, or the inputs differ in rank or in a dimension other
            than `axis`, or `axis` is out of range (the error names the layer and the shapes).

    Example:

    >>> import numpy as np
    >>> Concatenate()([np.zeros((2, 3, 4)), np.ones((2, 3, 1))]).shape
    (2, 3, 5)
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Argument `axis` must be an int, received {axis!r}.")
        self.axis = int(axis)

    def _concat_axis(self, shapes):
        """`axis` as a non-negative index, after checking that `shapes` concatenate."""
        mismatch = ValueError(f"Concatenate layer '{self.name}' needs inputs with matching shapes "
                              f"except along the concatenation axis ({self.axis}), received "
                              f"shapes {shapes}.")
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise mismatch
        rank = ranks.pop()
        if not -rank <= self.axis < rank:
            raise ValueError(f"Concatenate layer '{self.name}': argument `axis` ({self.axis}) is "
                             f"out of range for inputs of rank {rank}, received shapes {shapes}.")
        axis = self.axis % rank
        for d in range(rank):
            if d != axis and len({s[d] for s in shapes} - {None}) > 1:
                raise mismatch
        return axis

    def compute_output_shape(self, input_shape):
        """The inputs' shape with the sizes along `axis` added (None if one is unknown).

        Raises:
            ValueError: not a list of shapes that concatenate along `axis`.
        """
        shapes = self._shape_list(input_shape)
        axis = self._concat_axis(shapes)
        out = list(shapes[0])
        for d in range(len(out)):
            known = [s[d] for s in shapes if s[d] is not None]
            out[d] = known[0] if known else None
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def call(self, inputs, training=False, mask=None):
        xs = self._arrays(inputs)
        axis = self._concat_axis([x.shape for x in xs])
        self._cache = (axis, [x.shape[axis] for x in xs]) if training else None
        return np.concatenate(xs, axis=axis)

    def backward(self, grad_outputs):
        """Returns the list of `d loss / d inputs`: `grad_outputs` split along `axis`."""
        if self._cache is None:
            raise RuntimeError(f"Concatenate layer '{self.name}': backward() needs a "
                               f"call(training=True) first.")
        axis, sizes = self._cache
        grad = np.asarray(grad_outputs, dtype=self.dtype)
        return np.split(grad, np.cumsum(sizes)[:-1], axis=axis)

    def compute_mask(self, inputs, mask=None):
        """Keras's `Concatenate.compute_mask`: each input's mask over its entries (all True for
        an unmasked input), concatenated along `axis`, then reduced with `any` over the last
        axis: `(B, T)` bool, or None when no input has a mask.

        Raises:
            ValueError: `mask` is not a list of one entry per input.
        """
        if mask is None:
            return None
        masks = self._mask_list(inputs, mask)
        if all(m is None for m in masks):
            return None
        full = []
        for x, m in zip(inputs, masks):
            shape = tuple(np.shape(x))
            if m is None:
                full.append(np.ones(shape, bool))
            elif m.ndim < len(shape):
                full.append(_expand_mask(m, shape, self))
            else:
                full.append(m)
        return np.concatenate(full, axis=self.axis).any(axis=-1)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """The dot product of two inputs along one axis of each (Keras 3's `keras.layers.Dot`).

    For inputs `x` `(B, *X)` and `y` `(B, *Y)` contracted along `axes = (a, b)`
    (`x.shape[a] == y.shape[b]`), the output is `(B, *X without a, *Y without b)`, Keras's
    `batch_dot`: `out[n, i..., j...] = sum_k x[n, i..., k, ...] y[n, j..., k, ...]`; when both
    inputs are `(B, D)` the output is `(B, 1)`.

    Args:
        axes: int (the same axis of both inputs) or a list/tuple of two ints; negative counts
            from the end; never the batch axis 0.
        normalize: bool; when True each input is first L2-normalized along its axis, as Keras's
            `ops.normalize` (`x * min(1 / ||x||, 1 / 1e-7)`), so the output is the cosine
            similarity.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of two arrays, each of rank >= 2, with the same batch size.

    Returns:
        `np.ndarray` of the layer's dtype, of the shape above.

    Raises:
        TypeError: `axes` is neither an int nor a list/tuple.
        ValueError: `axes` does not hold two ints; `inputs` is not a list of two arrays of rank
            >= 2 with one batch size; an axis is out of range or the batch axis; the sizes
            along the axes differ (the error names the layer and the shapes).

    Example:

    >>> import numpy as np
    >>> Dot(axes=1)([np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])]).tolist()
    [[11.0]]
    """

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2 or not all(isinstance(a, (int, np.integer)) and
                                         not isinstance(a, bool) for a in axes):
                raise ValueError(f"Argument `axes` must be an int or a list of two ints, "
                                 f"received axes={axes!r}.")
            axes = [int(a) for a in axes] if isinstance(axes, list) else tuple(int(a) for a in axes)
        elif isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
            axes = int(axes)
        else:
            raise TypeError(f"Argument `axes` must be an int or a list of two ints, received "
                            f"{type(axes).__name__} {axes!r}.")
        self.axes = axes
        self.normalize = bool(normalize)

    def _axes(self, shapes):
        """The contracted axis of each input, non-negative; raises for shapes `Dot` refuses."""
        if len(shapes) != 2:
            raise ValueError(f"Dot layer '{self.name}' must be called on exactly 2 inputs, "
                             f"received {len(shapes)} inputs of shapes {shapes}.")
        if any(len(s) < 2 for s in shapes):
            raise ValueError(f"Dot layer '{self.name}' needs inputs of rank >= 2 (batch first), "
                             f"received shapes {shapes}.")
        self._batch_size(shapes)
        pair = self.axes if isinstance(self.axes, (list, tuple)) else (self.axes, self.axes)
        axes = []
        for a, shape in zip(pair, shapes):
            if not -len(shape) <= a < len(shape) or a % len(shape) == 0:
                raise ValueError(f"Dot layer '{self.name}': argument `axes` ({self.axes!r}) must "
                                 f"name a non-batch axis of each input, received shapes {shapes}.")
            axes.append(a % len(shape))
        d1, d2 = shapes[0][axes[0]], shapes[1][axes[1]]
        if d1 is not None and d2 is not None and d1 != d2:
            raise ValueError(f"Dot layer '{self.name}': incompatible input shapes, sizes {d1} "
                             f"(axis {axes[0]}) and {d2} (axis {axes[1]}); received shapes "
                             f"{shapes}.")
        return axes

    def compute_output_shape(self, input_shape):
        """`(B, *X without axes[0], *Y without axes[1])`, `(B, 1)` for two 2-D inputs.

        Raises:
            ValueError: shapes `Dot` refuses (see the class docstring).
        """
        shapes = self._shape_list(input_shape)
        a0, a1 = self._axes(shapes)
        x, y = list(shapes[0]), list(shapes[1])
        del x[a0], y[a1], y[0]
        out = tuple(x + y)
        return out + (1,) if len(out) == 1 else out

    def compute_mask(self, inputs, mask=None):
        """None: the dot product has no mask (Keras's `Dot.compute_mask`)."""
        return None

    def call(self, inputs, training=False, mask=None):
        xs = self._arrays(inputs)
        a0, a1 = self._axes([x.shape for x in xs])
        x, y = xs
        x_norm = y_norm = None
        if self.normalize:
            x, x_norm = _l2_normalize(x, a0)
            y, y_norm = _l2_normalize(y, a1)
        xt, yt = np.moveaxis(x, a0, -1), np.moveaxis(y, a1, 1)
        batch, k = xt.shape[0], xt.shape[-1]
        # out[n, i, j] = sum_k x[n, i, k] y[n, k, j], with i and j the other axes flattened
        out = np.matmul(xt.reshape(batch, -1, k), yt.reshape(batch, k, -1))
        out_shape = xt.shape[:-1] + yt.shape[2:]
        self._cache = ((x, a0, x_norm), (y, a1, y_norm)) if training else None
        return out.reshape(out_shape if len(out_shape) > 1 else (batch, 1))

    def backward(self, grad_outputs):
        """Returns `[d loss / d x, d loss / d y]`, through the normalization when there is
        one."""
        if self._cache is None:
            raise RuntimeError(f"Dot layer '{self.name}': backward() needs a call(training=True) "
                               f"first.")
        (x, a0, x_norm), (y, a1, y_norm) = self._cache
        xt, yt = np.moveaxis(x, a0, -1), np.moveaxis(y, a1, 1)
        batch, k = xt.shape[0], xt.shape[-1]
        x3, y3 = xt.reshape(batch, -1, k), yt.reshape(batch, k, -1)
        g3 = np.asarray(grad_outputs, dtype=self.dtype).reshape(batch, x3.shape[1], y3.shape[2])
        gx = np.moveaxis((g3 @ y3.transpose(0, 2, 1)).reshape(xt.shape), -1, a0)
        gy = np.moveaxis((x3.transpose(0, 2, 1) @ g3).reshape(yt.shape), 1, a1)
        if self.normalize:
            gx = _l2_normalize_backward(gx, x, x_norm, a0)
            gy = _l2_normalize_backward(gy, y, y_norm, a1)
        return [gx, gy]

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _l2_normalize(x, axis):
    """`(x * scale, (scale, clipped))` with `scale = min(1 / ||x||, 1 / eps)` along `axis`
    (kept as size 1), Keras's `ops.normalize(x, axis)`; `clipped` where `1 / eps` won."""
    cap = np.asarray(1.0 / _EPSILON, x.dtype)
    with np.errstate(divide="ignore"):
        inverse_norm = 1.0 / np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    clipped = inverse_norm > cap
    scale = np.where(clipped, cap, inverse_norm)
    return x * scale, (scale, clipped)


def _l2_normalize_backward(grad, normalized, norm, axis):
    """`d loss / d x` of `normalized = x * scale`: `scale * (grad - normalized * <grad,
    normalized>)`, or `scale * grad` where the scale was clipped (a constant there, as in
    `tf.minimum`'s gradient)."""
    scale, clipped = norm
    projection = np.sum(grad * normalized, axis=axis, keepdims=True)
    return scale * (grad - np.where(clipped, np.zeros((), grad.dtype), normalized * projection))


# Keras's functional forms: `keras.layers.concatenate([a, b])` is `Concatenate()([a, b])`.


def concatenate(inputs, axis=-1, **kwargs):
    """`Concatenate(axis=axis, **kwargs)(inputs)` (Keras 3's `keras.layers.concatenate`).

    Args:
        inputs: list of arrays of one rank whose shapes agree except along `axis`, or of
            `KerasTensor`s (then the call is recorded in a functional model's graph).
        axis: int, the axis to concatenate along (negative counts from the end).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Returns:
        `np.ndarray` of the layer's dtype (float32 by default), the inputs' shape with the
        sizes along `axis` added; a `KerasTensor` of that shape for `KerasTensor` inputs.

    Raises:
        TypeError: `axis` is not an int.
        ValueError: as `Concatenate`: the shapes do not concatenate along `axis`.

    Example:

    >>> from pylstm.layers import Input
    >>> concatenate([Input((5, 2)), Input((5, 3))]).shape
    (None, 5, 5)
    """
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs, **kwargs):
    """`Add(**kwargs)(inputs)` (Keras 3's `keras.layers.add`).

    Args:
        inputs: list of arrays `(B, ...)` that broadcast together, or of `KerasTensor`s.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype (float32 by default); a
        `KerasTensor` for `KerasTensor` inputs.

    Raises:
        ValueError: as `Add`: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> import numpy as np
    >>> y = add([np.ones((2, 3)), np.full((2, 1), 2.0)])
    >>> y.shape, y.dtype, float(y[0, 0])
    ((2, 3), dtype('float32'), 3.0)
    """
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """`Subtract(**kwargs)(inputs)` (Keras 3's `keras.layers.subtract`): `inputs[0] -
    inputs[1]`.

    Args:
        inputs: list of two arrays `(B, ...)` that broadcast together, or of `KerasTensor`s.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype (float32 by default); a
        `KerasTensor` for `KerasTensor` inputs.

    Raises:
        ValueError: as `Subtract`: not exactly two inputs, or shapes that do not broadcast.

    Example:

    >>> import numpy as np
    >>> subtract([np.array([[5.0, 1.0]]), np.array([[2.0, 3.0]])]).tolist()
    [[3.0, -2.0]]
    """
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """`Multiply(**kwargs)(inputs)` (Keras 3's `keras.layers.multiply`).

    Args:
        inputs: list of arrays `(B, ...)` that broadcast together, or of `KerasTensor`s.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype (float32 by default); a
        `KerasTensor` for `KerasTensor` inputs.

    Raises:
        ValueError: as `Multiply`: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> from pylstm.layers import Input
    >>> multiply([Input((5, 4)), Input((1, 4))]).shape
    (None, 5, 4)
    """
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """`Average(**kwargs)(inputs)` (Keras 3's `keras.layers.average`).

    Args:
        inputs: list of arrays `(B, ...)` that broadcast together, or of `KerasTensor`s.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype (float32 by default); a
        `KerasTensor` for `KerasTensor` inputs.

    Raises:
        ValueError: as `Average`: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> import numpy as np
    >>> average([np.array([[1.0, 2.0]]), np.array([[3.0, 6.0]])]).tolist()
    [[2.0, 4.0]]
    """
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """`Maximum(**kwargs)(inputs)` (Keras 3's `keras.layers.maximum`).

    Args:
        inputs: list of arrays `(B, ...)` that broadcast together, or of `KerasTensor`s.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype (float32 by default); a
        `KerasTensor` for `KerasTensor` inputs.

    Raises:
        ValueError: as `Maximum`: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> import numpy as np
    >>> maximum([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]]), np.zeros((1, 2))]).tolist()
    [[3.0, 5.0]]
    """
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """`Minimum(**kwargs)(inputs)` (Keras 3's `keras.layers.minimum`).

    Args:
        inputs: list of arrays `(B, ...)` that broadcast together, or of `KerasTensor`s.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Returns:
        `np.ndarray` of the broadcast shape and the layer's dtype (float32 by default); a
        `KerasTensor` for `KerasTensor` inputs.

    Raises:
        ValueError: as `Minimum`: `inputs` is not a list, or its shapes do not broadcast.

    Example:

    >>> import numpy as np
    >>> minimum([np.array([[1.0, 5.0]]), np.array([[3.0, 2.0]]), np.zeros((1, 2))]).tolist()
    [[0.0, 0.0]]
    """
    return Minimum(**kwargs)(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    """`Dot(axes, normalize, **kwargs)(inputs)` (Keras 3's `keras.layers.dot`).

    Args:
        inputs: list of two arrays `(B, *X)` and `(B, *Y)` of rank >= 2, or of `KerasTensor`s.
        axes: int (the same axis of both inputs) or a list/tuple of two ints, never the batch
            axis 0; negative counts from the end.
        normalize: bool; True L2-normalizes each input along its axis first (cosine
            similarity).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Returns:
        `np.ndarray` `(B, *X without axes[0], *Y without axes[1])` (`(B, 1)` for two `(B, D)`
        inputs) of the layer's dtype (float32 by default); a `KerasTensor` of that shape for
        `KerasTensor` inputs.

    Raises:
        TypeError: `axes` is neither an int nor a list/tuple.
        ValueError: as `Dot`: `axes` not two ints, not two inputs of rank >= 2, or sizes
            along the axes that differ.

    Example:

    >>> from pylstm.layers import Input
    >>> queries, keys = Input((5, 8)), Input((7, 8))
    >>> dot([queries, keys], axes=2).shape  # attention scores, (B, 5, 7)
    (None, 5, 7)
    """
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
