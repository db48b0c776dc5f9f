"""The reference MLP with Dropout and GaussianNoise: a model that draws random numbers while it trains.

    KERAS_BACKEND=jax backendlab train --model examples/dropout_mlp.py:build --seed 0 --epochs 1
    KERAS_BACKEND=torch backendlab train --model examples/dropout_mlp.py:build --seed 0 --epochs 1

Under ``--random portable`` (the default) both print the same loss; ``--random backend`` does not.
"""

import keras


def build():
    return keras.Sequential(
        [
            keras.Input((30,)),
            keras.layers.GaussianNoise(0.1),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
