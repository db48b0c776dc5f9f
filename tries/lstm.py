"""2. Embedding + LSTM with dropout and recurrent_dropout + Dense, on integer tokens."""

import keras


def build():
    model = keras.Sequential(
        [
            keras.Input((12,), dtype="int32"),
            keras.layers.Embedding(50, 8),
            keras.layers.LSTM(8, dropout=0.2, recurrent_dropout=0.2),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def plain():
    """The same layers uncompiled: compare's SGD, whose update of the Embedding's sparse gradient is the dense one."""
    return keras.Sequential(
        [
            keras.Input((12,), dtype="int32"),
            keras.layers.Embedding(50, 8),
            keras.layers.LSTM(8, dropout=0.2, recurrent_dropout=0.2),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
