"""A stack of recurrent layers of one or two directions, forward and backward: the loop that
`pylstm.nn.LSTM`, `pylstm.layers.RNN` (whole sequences) and `StackedRNNCells` (one step) run,
and the side-by-side run of two directions that `pylstm.layers.Bidirectional` shares.

Design:
    Layer k reads the output of layer k - 1, both directions concatenated along the last axis
    (direction 0 first), after `between(k, x)` (`pylstm.nn.LSTM`'s dropout between layers).
    What one direction of one layer computes is the caller's `run(layer, d, x)`: the stack
    owns only the order. The directions of a layer are independent, so they run side by side
    on a multi-core machine (`pylstm._threads.concurrently`, from its FLOP threshold on), each
    writing its half of the layer's output. Backward runs the layers from the top: each
    direction's `run_backward(layer, d, dy_d)` (side by side again), `take(k, grads)` of each
    in direction order, the input gradients summed (direction 0 first), then the gradient
    through `between`. Directions are numbered `k = layer * num_directions + d`, PyTorch's
    order of `h_n`.

Legend: P the output size of one direction.
"""

import functools
import math

from pylstm import _threads
from pylstm.ops._buffers import empty


def recurrent_flop(x, units, output_size):
    """FLOPs of one direction's recurrent products over the input rows of `x` `(..., D)`:
    `(rows, P) @ (P, 4 * units)`."""
    return 2 * math.prod(x.shape[:-1]) * output_size * 4 * units


def side_by_side(calls, flop_each):
    """Runs the independent `calls` (the directions of a layer), at once when `flop_each`, the
    recurrent FLOPs of one, makes threads worth it; their results in order."""
    return _threads.concurrently(calls, flop_each)


def forward(x, num_layers, run, *, num_directions=1, output_size=None, flop=None,
            between=None):
    """Runs `x` through the stack.

    Args:
        x: the first layer's input, `(..., D)`.
        num_layers: int >= 1.
        run: `run(layer, d, x) -> (y, cache)`, one direction of one layer; `y` `(..., P)`.
        num_directions: 1 or 2.
        output_size: P, with two directions (the width of each half of the output).
        flop: with two directions, `flop(x)`: the recurrent FLOPs of one direction on `x`.
        between: None, or `between(layer, x) -> x` applied to the input of each layer but the
            first.

    Returns:
        `(y, caches)`: the last layer's output (`(..., num_directions * P)`) and the caches of
        every layer and direction, in the order `layer * num_directions + d`.
    """
    D, P = num_directions, output_size
    caches = []
    for layer in range(num_layers):
        if layer > 0 and between is not None:
            x = between(layer, x)
        # one direction's output is the layer's; two write their halves of y
        y = empty(x.shape[:-1] + (D * P,), x.dtype) if D > 1 else None

        def direction(d, x=x, layer=layer, y=y):
            out, cache = run(layer, d, x)
            if y is None:
                return cache, out
            y[..., d * P:(d + 1) * P] = out
            return cache, y

        results = side_by_side([functools.partial(direction, d) for d in range(D)],
                               flop(x) if D > 1 else 0)
        caches += [cache for cache, _ in results]
        x = results[0][1]
    return x, caches


def backward(dy, caches, num_layers, run_backward, take, *, num_directions=1,
             output_size=None, flop=None, between=None):
    """Backpropagates through the stack, top layer first.

    Args:
        dy: gradient with respect to the stack's output, or None.
        caches: `forward`'s caches (each with the layer's input as `.x`, read for the FLOP
            count of two directions).
        num_layers: int >= 1.
        run_backward: `run_backward(layer, d, dy_d) -> grads`, a dict with the gradient
            with respect to the direction's input as `"x"`; `dy_d` is direction d's half of
            `dy` (or None).
        take: `take(k, grads)`, called in the caller's thread in the order of `k`, e.g. to
            add weight gradients.
        num_directions, output_size, flop, between: as for `forward`; here `between(layer,
            dx) -> dx` is the gradient through `forward`'s `between`.

    Returns:
        The gradient with respect to the first layer's input.
    """
    D, P = num_directions, output_size
    for layer in reversed(range(num_layers)):

        def direction(d, dy=dy, layer=layer):
            dy_d = dy if dy is None or D == 1 else dy[..., d * P:(d + 1) * P]
            return run_backward(layer, d, dy_d)

        all_grads = side_by_side([functools.partial(direction, d) for d in range(D)],
                                 flop(caches[layer * D].x) if D > 1 else 0)
        dx = None
        for d, grads in enumerate(all_grads):
            take(layer * D + d, grads)
            dx = grads["x"] if dx is None else dx + grads["x"]
        dy = dx if between is None else between(layer, dx)
    return dy
