"""Dot-product (Luong) and additive (Bahdanau) attention, as Keras 3's `keras.layers.Attention`
and `keras.layers.AdditiveAttention`.

Design:
    Dimension letters: B batch, Tq query steps, Tv value (and key) steps, D query and key
    features, Dv value features. One call computes

        scores  = score(query, key)                       (B, Tq, Tv)
        scores  = where(scores_mask, scores, scores - 1e9)
        weights = softmax(scores, axis=-1)                (B, Tq, Tv)
        weights = weights * keep                          (training dropout, inverted)
        output  = weights @ value                         (B, Tq, Dv)
        output  = where(query_mask, output, 0)

    where `score` is the subclass's: `Attention` takes `query @ key^T` ("dot") or
    `c * sum(tanh(query_i + key_j))` ("concat"), `AdditiveAttention` takes
    `sum(scale * tanh(query_i + key_j))`. `call(training=True)` caches the inputs, the softmax
    and the dropout mask, and what the score needs for its own backward (the product `query @
    key^T`, or the `(B, Tq, Tv, D)` tanh); `backward` runs the chain above in reverse: the
    softmax's vector-Jacobian product is `w * (g - sum(g * w, -1))`, and the `- 1e9` shift has
    derivative 1.
"""

import numpy as np

from pylstm import utils
from pylstm.layers.layer import Layer

_SCORE_MODES = ("dot", "concat")
# Keras's bias that takes masked scores out of the softmax (65504 in float16, which pylstm
# does not use).
_MASKED_SCORE_SHIFT = 1.0e9


class Attention(Layer):
    """Dot-product attention, a.k.a. Luong-style attention (Luong et al., 2015), as Keras 3's
    `keras.layers.Attention`.

    Each query step attends over the value steps: the scores of the query against the key
    (the value when no key is given) go through a softmax over the value steps, and the output
    is the weighted sum of the value steps.

    Args:
        use_scale: bool; True creates the trainable scalar weight `scale` (initialized to 1)
            that multiplies the scores ("dot") or the sum `query_i + key_j` inside the tanh
            ("concat").
        score_mode: `"dot"` (default), scores `query @ key^T`, or `"concat"`, scores
            `concat_score_weight * sum(tanh(query_i + key_j), axis=-1)` with the trainable
            scalar `concat_score_weight` (initialized to 1).
        dropout: float in `[0, 1)`, the fraction of the attention distribution's entries
            dropped in training (inverted dropout: survivors are scaled by
            `1 / (1 - dropout)`).
        seed: int or None; a seeded layer draws a different (reproducible) dropout mask on each
            call, an unseeded one draws from `pylstm.utils`'s module generator.
        **kwargs: base `Layer` arguments (`name`, `trainable`, `dtype`).

    Call arguments:
        inputs: the list `[query, value]` or `[query, value, key]`: `query` of shape
            `(B, Tq, D)`, `value` of shape `(B, Tv, Dv)`, `key` of shape `(B, Tv, D)`
            (default: `value`, which then needs `Dv == D`); cast to the layer's dtype.
        mask: None or the list `[query_mask, value_mask]` (a third entry, a key mask, is
            ignored as in Keras), each None or a bool array: `query_mask` `(B, Tq)` zeroes the
            output at its False steps; `value_mask` `(B, Tv)` takes its False steps out of the
            softmax.
        training: bool; True applies dropout and caches what `backward` needs.
        return_attention_scores: bool; True also returns the attention distribution.
        use_causal_mask: bool; True lets query step `i` attend to value steps `j <= i` only
            (decoder self-attention).

    Returns:
        `(B, Tq, Dv)` array of the layer's dtype; with `return_attention_scores`, the list
        `[output, scores]` where `scores` is the `(B, Tq, Tv)` attention distribution after
        masking, softmax and dropout. A query row with no allowed value step gets the softmax
        of its scores shifted by `-1e9`, as in Keras: in float32 the shift rounds them all to
        `-1e9`, a uniform distribution.

    Raises:
        ValueError: an unknown `score_mode`, `dropout` outside `[0, 1)`, `inputs` not a list
            of 2 or 3 arrays of rank 3 with matching batch, step and feature sizes, or `mask`
            not a list of 2 or 3 entries of the inputs' `(B, T)` shapes.

    Example:
    >>> import numpy as np
    >>> query = np.ones((2, 3, 4), dtype="float32")
    >>> value = np.arange(40, dtype="float32").reshape(2, 5, 4)
    >>> Attention()([query, value]).shape
    (2, 3, 4)
    >>> out, scores = Attention()([query, value], return_attention_scores=True)
    >>> scores.shape, np.allclose(scores.sum(axis=-1), 1.0)
    ((2, 3, 5), True)
    """

    supports_masking = True

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if score_mode not in _SCORE_MODES:
            raise ValueError(f"Argument `score_mode` must be one of {list(_SCORE_MODES)}, "
                             f"received {score_mode!r}.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= dropout < 1.0:
            raise ValueError(f"Argument `dropout` must be a float in [0, 1), received "
                             f"{dropout!r}.")
        self.use_scale = bool(use_scale)
        self.score_mode = score_mode
        self.dropout = float(dropout)
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)
        self.scale = None
        self.concat_score_weight = None
        self._cache = None

    def build(self, input_shape):
        _check_input_shapes(input_shape, self.name)
        self._add_score_weights(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape, return_attention_scores=False):
        """`(B, Tq, Dv)`; with `return_attention_scores`, `[(B, Tq, Dv), (B, Tq, Tv)]`. Any
        dimension may be None."""
        _check_input_shapes(input_shape, self.name)
        query, value = tuple(input_shape[0]), tuple(input_shape[1])
        key = tuple(input_shape[2]) if len(input_shape) > 2 else value
        output = query[:-1] + (value[-1],)
        if return_attention_scores:
            steps = key[-2] if key[-2] is not None else value[-2]
            return [output, query[:-1] + (steps,)]
        return output

    def compute_mask(self, inputs, mask=None):
        """The query mask (Keras's `compute_mask`): the output's step `i` is query step `i`."""
        if mask is None:
            return None
        _check_mask_list(mask, self.name)
        return mask[0]

    # Scores: the part `AdditiveAttention` replaces -------------------------------------

    def _add_score_weights(self, input_shape):
        if self.use_scale:
            self.scale = self.add_weight("scale", (), "ones")
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight("concat_score_weight", (), "ones")

    def _calculate_scores(self, query, key):
        """Returns `(scores (B, Tq, Tv), cache for _scores_backward)`."""
        if self.score_mode == "dot":
            products = query @ np.swapaxes(key, -1, -2)
            if self.scale is None:
                return products, products
            return products * self.scale.value, products
        sums = query[:, :, None, :] + key[:, None, :, :]
        tanh = np.tanh(sums if self.scale is None else self.scale.value * sums)
        return self.concat_score_weight.value * tanh.sum(axis=-1), (sums, tanh)

    def _scores_backward(self, grad_scores, query, key, cache):
        """Returns `(grad_query, grad_key)` from `grad_scores` `(B, Tq, Tv)`; adds the score
        weights' gradients."""
        if self.score_mode == "dot":
            if self.scale is not None:
                self.scale.grad += np.sum(grad_scores * cache)
                grad_scores = grad_scores * self.scale.value
            return grad_scores @ key, np.swapaxes(grad_scores, -1, -2) @ query
        sums, tanh = cache
        self.concat_score_weight.grad += np.sum(grad_scores * tanh.sum(axis=-1))
        # d/d(the tanh's argument), from the tanh's cached output.
        grad_sums = (self.concat_score_weight.value * grad_scores)[..., None] * (1.0 - tanh * tanh)
        if self.scale is not None:
            self.scale.grad += np.sum(grad_sums * sums)
            grad_sums = grad_sums * self.scale.value
        return grad_sums.sum(axis=2), grad_sums.sum(axis=1)

    # Forward and backward ------------------------------------------------------------

    def call(self, inputs, training=False, mask=None, return_attention_scores=False,
             use_causal_mask=False):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"Layer '{self.name}' must be called on a list [query, value] or "
                             f"[query, value, key], received {type(inputs).__name__}.")
        arrays = [np.asarray(x, dtype=self.dtype) for x in inputs]
        _check_input_shapes([x.shape for x in arrays], self.name)
        query, value = arrays[0], arrays[1]
        key = arrays[2] if len(arrays) > 2 else value
        query_mask, value_mask = self._masks(mask, query, value)

        scores, score_cache = self._calculate_scores(query, key)
        scores_mask = _scores_mask(value_mask, use_causal_mask, scores.shape)
        if scores_mask is not None:
            scores = np.where(scores_mask, scores, scores - _MASKED_SCORE_SHIFT)
        weights = _softmax(scores)
        keep = None
        if training and self.dropout > 0.0:
            rng = self._rng if self._rng is not None else utils.default_generator()
            keep = (rng.random(weights.shape) >= self.dropout).astype(self.dtype)
            keep /= 1.0 - self.dropout
            weights_out = weights * keep
        else:
            weights_out = weights
        output = weights_out @ value
        if query_mask is not None:
            output = np.where(query_mask[..., None], output, 0)
        self._cache = ((query, value, key, len(arrays) > 2, query_mask, weights, keep,
                        weights_out, score_cache, return_attention_scores)
                       if training else None)
        if return_attention_scores:
            return [output, weights_out]
        return output

    def backward(self, grad_outputs):
        """Returns `[grad_query, grad_value]` (`[grad_query, grad_value, grad_key]` when called
        with a key), each of its input's shape; adds the weights' gradients into their `grad`.

        Args:
            grad_outputs: `(B, Tq, Dv)` array, or with `return_attention_scores` the list
                `[grad_output, grad_scores]` (an entry may be None for zero).

        Raises:
            RuntimeError: no `call(training=True)` came first.
        """
        if self._cache is None:
            raise RuntimeError(f"Layer '{self.name}': backward() needs a call(training=True) "
                               f"first.")
        (query, value, key, has_key, query_mask, weights, keep, weights_out, score_cache,
         returned_scores) = self._cache
        grad_output, grad_weights_out = (grad_outputs if returned_scores
                                         else (grad_outputs, None))
        if grad_output is None:
            grad_output = np.zeros(query.shape[:-1] + value.shape[-1:], dtype=self.dtype)
        grad_output = np.asarray(grad_output, dtype=self.dtype)
        if query_mask is not None:
            grad_output = np.where(query_mask[..., None], grad_output, 0)
        grad_value = np.swapaxes(weights_out, -1, -2) @ grad_output
        grad_out_w = grad_output @ np.swapaxes(value, -1, -2)
        if grad_weights_out is not None:
            grad_out_w = grad_out_w + np.asarray(grad_weights_out, dtype=self.dtype)
        grad_w = grad_out_w if keep is None else grad_out_w * keep
        grad_scores = weights * (grad_w - np.sum(grad_w * weights, axis=-1, keepdims=True))
        grad_query, grad_key = self._scores_backward(grad_scores, query, key, score_cache)
        if has_key:
            return [grad_query, grad_value, grad_key]
        return [grad_query, grad_value + grad_key]

    def _masks(self, mask, query, value):
        """`(query_mask, value_mask)`, each None or a `(B, T)` bool array."""
        if mask is None:
            return None, None
        _check_mask_list(mask, self.name)
        out = []
        for which, m, x in (("query_mask", mask[0], query), ("value_mask", mask[1], value)):
            if m is not None:
                m = np.asarray(m, dtype=bool)
                if m.shape != x.shape[:2]:
                    raise ValueError(f"Layer '{self.name}': `{which}` must have shape "
                                     f"{x.shape[:2]} (batch, steps), received {m.shape}.")
            out.append(m)
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale,
                "score_mode": self.score_mode, "dropout": self.dropout, "seed": self.seed}


class AdditiveAttention(Attention):
    """Additive attention, a.k.a. Bahdanau-style attention (Bahdanau et al., 2015), as Keras 3's
    `keras.layers.AdditiveAttention`.

    As `Attention`, with the scores `sum(scale * tanh(query_i + key_j), axis=-1)`: `scale` is a
    trainable `(D,)` weight (Glorot-uniform initialized) when `use_scale`, else 1.

    Args:
        use_scale: bool (default True); creates the `(D,)` weight `scale`.
        dropout: float in `[0, 1)`, dropout on the attention distribution in training.
        seed: int or None, the dropout's seed (see `Attention`).
        **kwargs: base `Layer` arguments (`name`, `trainable`, `dtype`).

    Call arguments, returns: as `Attention`; `query` and `key` need the same `D`.

    Raises:
        ValueError: as `Attention`, and for an unknown query feature size `D` at build time.

    Example:
    >>> import numpy as np
    >>> layer = AdditiveAttention()
    >>> layer([np.ones((2, 3, 4), dtype="float32"), np.ones((2, 5, 4), dtype="float32")]).shape
    (2, 3, 4)
    >>> [w.shape for w in layer.get_weights()]
    [(4,)]
    """

    def __init__(self, use_scale=True, dropout=0.0, seed=None, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, seed=seed, **kwargs)

    def _add_score_weights(self, input_shape):
        dim = input_shape[0][-1]
        if dim is None:
            raise ValueError(f"Layer '{self.name}' needs the query's last dimension to build "
                             f"its `scale`, received query shape {tuple(input_shape[0])}.")
        if self.use_scale:
            self.scale = self.add_weight("scale", (dim,), "glorot_uniform")

    def _calculate_scores(self, query, key):
        tanh = np.tanh(query[:, :, None, :] + key[:, None, :, :])
        if self.scale is None:
            return tanh.sum(axis=-1), tanh
        return tanh @ self.scale.value, tanh

    def _scores_backward(self, grad_scores, query, key, tanh):
        if self.scale is not None:
            self.scale.grad += np.einsum("bqv,bqvd->d", grad_scores, tanh)
            grad_tanh = grad_scores[..., None] * self.scale.value
        else:
            grad_tanh = grad_scores[..., None]
        grad_sums = grad_tanh * (1.0 - tanh * tanh)
        return grad_sums.sum(axis=2), grad_sums.sum(axis=1)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config


def _softmax(scores):
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _scores_mask(value_mask, use_causal_mask, scores_shape):
    """Which scores enter the softmax: None (all), or a bool array broadcasting to
    `scores_shape` (B, Tq, Tv): the value mask `(B, 1, Tv)` and, with `use_causal_mask`, the
    lower triangle `j <= i` `(1, Tq, Tv)`, as Keras builds them."""
    masks = []
    if value_mask is not None:
        masks.append(value_mask[:, None, :])
    if use_causal_mask:
        tq, tv = scores_shape[-2:]
        masks.append(np.tril(np.ones((tq, tv), dtype=bool))[None])
    if not masks:
        return None
    return masks[0] if len(masks) == 1 else masks[0] & masks[1]


def _check_mask_list(mask, layer_name):
    if not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3:
        raise ValueError(f"Argument `mask` of layer '{layer_name}' must be a list "
                         f"[query_mask, value_mask], received {str(mask)[:80]}.")


def _check_input_shapes(shapes, layer_name):
    """Checks `[query, value]` or `[query, value, key]` shapes (None dimensions pass): rank 3,
    one batch size, key steps = value steps, key features = query features."""
    if not isinstance(shapes, (list, tuple)) or not 2 <= len(shapes) <= 3 or \
            not all(isinstance(s, (list, tuple)) for s in shapes):
        raise ValueError(f"Layer '{layer_name}' must be called on a list [query, value] or "
                         f"[query, value, key], received input shape {shapes}.")
    shapes = [tuple(s) for s in shapes]
    names = ("query", "value", "key")
    for name, shape in zip(names, shapes):
        if len(shape) != 3:
            raise ValueError(f"Layer '{layer_name}': `{name}` must have rank 3 (batch, steps, "
                             f"features), received shape {shape}.")
    query, value = shapes[0], shapes[1]
    key = shapes[2] if len(shapes) > 2 else value
    key_name = "key" if len(shapes) > 2 else "value (the key)"

    def differ(a, b):
        return a is not None and b is not None and a != b

    if any(differ(query[0], s[0]) for s in shapes[1:]):
        raise ValueError(f"Layer '{layer_name}': the inputs must have the same batch size, "
                         f"received shapes {shapes}.")
    if differ(key[1], value[1]):
        raise ValueError(f"Layer '{layer_name}': `key` must have as many steps as `value`, "
                         f"received key shape {key} and value shape {value}.")
    if differ(key[2], query[2]):
        raise ValueError(f"Layer '{layer_name}': the {key_name} must have the query's feature "
                         f"size {query[2]}, received shape {key}.")
