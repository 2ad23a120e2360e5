"""The table `summary()` prints for `Sequential` and functional models, as Keras prints it."""

import textwrap


def print_summary(model, header, rows, widths, print_fn=None):
    """Prints `Model: "<name>"`, a table of one row per layer under `header`, each cell wrapped
    at spaces to its column, and the model's parameter counts and size.

    Args:
        model: the model (its `name`, `count_params()`, `weights`, `trainable_variables`).
        header: tuple of str, the column titles.
        rows: list of tuples of str, one per layer, one cell per column.
        widths: tuple of int, each column's width in characters.
        print_fn: callable taking one line (str); defaults to `print`.
    """
    print_fn = print_fn or print
    rule = "_" * sum(widths)
    lines = [f'Model: "{model.name}"', rule, *_row(header, widths), "=" * sum(widths)]
    for i, cells in enumerate(rows):
        lines += _row(cells, widths)
        lines.append("=" * sum(widths) if i == len(rows) - 1 else "")
    total = model.count_params()
    trainable = sum(v.value.size for v in model.trainable_variables)
    nbytes = sum(v.value.nbytes for v in model.weights)
    lines += [f"Total params: {total:,} ({_format_bytes(nbytes)})",
              f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", rule]
    for line in lines:
        print_fn(line)


def _row(cells, widths):
    """The lines of one row: each cell wrapped to its column's width less a space each side."""
    wrapped = [textwrap.wrap(cell, w - 2) or [""] for cell, w in zip(cells, widths)]
    return ["".join(f" {(column[k] if k < len(column) else ''):<{w - 1}}"
                    for column, w in zip(wrapped, widths)).rstrip()
            for k in range(max(len(column) for column in wrapped))]


def _format_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024
