"""The seed's low-level loop, line for line, on whichever backend KERAS_BACKEND names.

The seed (TensorFlow only):

    for epoch in range(epochs):
        for x_batch, y_batch in dataset:
            with tf.GradientTape() as tape:
                y_pred = model(x_batch, training=True)
                loss_value = loss_fn(y_batch, y_pred)
            grads = tape.gradient(loss_value, model.trainable_weights)
            optimizer.apply_gradients(zip(grads, model.trainable_weights))

With backendlab the three inner lines become one ``step(x_batch, y_batch)``, which runs
GradientTape on TensorFlow, jax.value_and_grad on JAX and backward() on PyTorch.

    KERAS_BACKEND=jax python examples/custom_loop.py
"""

import os
import tempfile

import backendlab  # before Keras: it keeps TensorFlow's C++ start-up lines off the terminal

# isort: split
import keras
from keras import ops

from backendlab.data import load_dataset


def kl_divergence(y_true, y_pred):  # a loss of your own, written with keras.ops
    y_true = ops.clip(y_true, 1e-7, 1.0)
    y_pred = ops.clip(y_pred, 1e-7, 1.0)
    return ops.sum(y_true * ops.log(y_true / y_pred), axis=-1)


# keras.utils.set_random_seed, without importing TensorFlow on JAX or PyTorch just to seed it.
backendlab.set_random_seed(0)  # the starting weights (each backend draws its own from this seed)
data = load_dataset("breast_cancer")
x_train, y_train = data.x_train, keras.utils.to_categorical(data.y_train, 2)
model = keras.Sequential(
    [keras.Input((30,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")]
)
optimizer = keras.optimizers.Adam(learning_rate=1e-2)
step = backendlab.TrainStep(model, kl_divergence, optimizer, metrics=["categorical_accuracy"])

batch_size = 32
for epoch in range(3):
    for start in range(0, len(x_train), batch_size):
        x_batch, y_batch = x_train[start : start + batch_size], y_train[start : start + batch_size]
        logs = step(x_batch, y_batch)  # tape / value_and_grad / backward, then optimizer.apply
    print(f"epoch {epoch + 1}: last batch loss {logs['loss']:.4f}, accuracy {logs['categorical_accuracy']:.3f}")

# Incremental learning: the weights and the optimizer's state are real Keras state,
# so the model saves, loads (on any backend) and keeps training where it stopped.
model.compile(optimizer=optimizer, loss=kl_divergence)
path = os.path.join(tempfile.mkdtemp(), "incremental.keras")
model.save(path)
restored = keras.saving.load_model(path, custom_objects={"kl_divergence": kl_divergence})
more = backendlab.TrainStep(restored, kl_divergence, restored.optimizer)
logs = more(x_train[:batch_size], y_train[:batch_size])
print(f"after reload: optimizer step {int(restored.optimizer.iterations)}, loss {logs['loss']:.4f}")
test_accuracy = ops.mean(ops.argmax(restored.predict(data.x_test, verbose=0), -1) == data.y_test)
print(f"{keras.backend.backend()}: test accuracy {float(test_accuracy):.3f}")
