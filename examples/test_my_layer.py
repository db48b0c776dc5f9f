"""Does your layer compute the same on JAX, TensorFlow and PyTorch? A test file to copy.

    pip install -c constraints.txt -e ".[all,test]"     # in a clone of backendlab
    pytest examples/test_my_layer.py

backendlab's pytest plugin gives the `backends_agree` fixture. Each backend builds the layer in
a worker process of its own, from the same weights, and compares outputs, gradients (inputs and
weights) and a .keras save loaded on every other backend.
"""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="MyLayers")  # so a .keras file saved anywhere loads
class ScaledDense(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight((input_shape[-1], self.units), initializer="glorot_uniform", name="kernel")
        self.scale = self.add_weight((self.units,), initializer="ones", name="scale")

    def call(self, x):
        return ops.tanh(ops.matmul(x, self.kernel)) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def make_layer():  # at module level: each backend's worker imports it from this file
    return ScaledDense(8)


def test_scaled_dense_agrees_across_backends(backends_agree):
    x = np.random.default_rng(0).standard_normal((4, 16)).astype("float32")
    backends_agree(make_layer, x)  # rtol=1e-5, atol=1e-6; backends=["jax", "torch"] to choose
