"""Native baselines: the benchmark's mlp and cnn written directly in each framework, no Keras.

Each module defines the same functions, so the worker never branches on the backend:

``devices()`` / ``sync(tree)`` / ``set_threads(n)`` / ``threads()``
``matmul_gflops(n, repeats)``  best float32 ``n x n`` matmul rate on the default device
``device_peak_mb()``           accelerator memory high-water mark, ``None`` on a CPU
``build_mlp(shape, seed)`` / ``build_cnn(shape, seed)``   a network from ``bench.shapes``
``count_params(net)``
``as_batches(x, y, batch_size)``  framework arrays, sliced once, in the framework's layout
``make_train_step(net)``       ``(x, y) -> loss``: one Adam step on softmax cross-entropy
``make_predict_step(net)``     ``x -> logits``
``COMPILER``                   how the step is compiled, for the rows' ``jit_compile`` column

Weights start from the frameworks' own initializers: only the speed is compared here,
the parity of training is ``backendlab compare``'s job.
"""
