"""Small seeded data sets for the tries."""

import numpy as np


def features():
    """200 rows of 8 float features, 3 integer classes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1)
    return (x[:160], y[:160]), (x[160:], y[160:])


def tokens():
    """Seeded integer token sequences (vocab 50, length 12), 4 classes from the token sum."""
    rng = np.random.default_rng(1)
    x = rng.integers(1, 50, size=(200, 12)).astype("int32")
    y = (x.sum(1) // 10) % 4
    return (x[:160], y[:160]), (x[160:], y[160:])


def huge():
    """Features with huge values (1e30), to blow training up."""
    (x, y), (xt, yt) = features()
    return (x * 1e30, y), (xt * 1e30, yt)


def images():
    """Tiny 8x8x3 images, 2 classes."""
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(120, 8, 8, 3)).astype("float32")
    y = (x[:, :4].mean((1, 2, 3)) > x[:, 4:].mean((1, 2, 3))).astype("int64")
    return (x[:96], y[:96]), (x[96:], y[96:])
