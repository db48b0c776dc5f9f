"""3. A model whose training blows up to NaN, with Dropout in it."""

import keras


def build():
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(1e12), loss="sparse_categorical_crossentropy")
    return model


def plain():
    """The same layers, uncompiled (compare's SGD), for --data tries/data.py:huge."""
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
