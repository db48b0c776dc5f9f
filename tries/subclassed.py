"""1. A subclassed keras.Model with a custom layer holding its own SeedGenerator."""

import keras


@keras.saving.register_keras_serializable(package="tries")
class NoisyDrop(keras.layers.Layer):
    """Adds normal noise and drops units with keras.random, in training only."""

    def __init__(self, rate=0.2, stddev=0.1, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.stddev = rate, stddev
        self.seed_generator = keras.random.SeedGenerator(7)

    def call(self, x, training=False):
        if not training:
            return x
        x = x + keras.random.normal(keras.ops.shape(x), stddev=self.stddev, seed=self.seed_generator)
        return keras.random.dropout(x, self.rate, seed=self.seed_generator)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="tries")
class Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.d1 = keras.layers.Dense(16, activation="relu")
        self.noisy = NoisyDrop(0.2, 0.1)
        self.d2 = keras.layers.Dense(16, activation="relu")
        self.drop = keras.layers.Dropout(0.3)
        self.out = keras.layers.Dense(3, activation="softmax")

    def call(self, x, training=False):
        x = self.noisy(self.d1(x), training=training)
        return self.out(self.drop(self.d2(x), training=training))


def build():
    return Net()
