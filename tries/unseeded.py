"""1b. A custom layer calling keras.random.normal with no seed (Keras's global SeedGenerator) in training."""

import keras


class GlobalNoise(keras.layers.Layer):
    def call(self, x, training=False):
        if training:
            return x + keras.random.normal(keras.ops.shape(x), stddev=0.1)
        return x


def build():
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            GlobalNoise(name="global_noise"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
