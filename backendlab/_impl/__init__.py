"""One module per backend, each defining the same functions.

``devices()``            names of the devices the framework sees
``sync(tree)``           wait until every array in ``tree`` is computed
``threads()``            the intra-op thread count the framework runs with (its own default resolved to a
                         number, as bench and tune record it)
``refuses_nan(exc)``     whether ``exc`` is the framework refusing a NaN where others compute
                         one (torch's binary cross-entropy raises on NaN predictions), so
                         training reports a NaN loss there as on every other backend
``make_train_step(model, loss_fn, optimizer, jit_compile=None)``
                         a function ``(x, y, sample_weight=None) -> (loss, y_pred)`` that takes one optimizer
                         step with the framework's own autodiff, compiled where the
                         framework compiles (``jit_compile``: True for XLA on TensorFlow
                         and torch.compile on PyTorch, False for JAX without jax.jit, None
                         for each one's usual: jax.jit, tf.function, eager), on the model's
                         and optimizer's real Keras state; its ``run_many(batches)`` takes
                         a step per ``(x, y)`` or ``(x, y, sample_weight)`` and returns the losses, unread (JAX carries
                         the state in arrays and writes it back to Keras once, at the end);
                         under torchrun it trains its rank's share of the global batch; given
                         ``shares`` (torch, ``--processes``), ``(x, y, sample_weight)`` is that share alone
``resolved_jit_compile(jit_compile=None)``
                         whether ``make_train_step`` with this ``jit_compile`` compiles the step
                         (XLA or torch.compile): what compare reports the custom loop ran as
``whole_step_fit(model)``
                         a context in which ``model.fit`` runs each training step as one compiled
                         graph (PyTorch: backendlab's train function in place of Keras's, whose
                         ``backward()`` breaks ``torch.compile``'s graph); on JAX and TensorFlow
                         ``fit`` already does, and nothing changes
``fit_gradients(model, x, y, sample_weight=None)``
                         one batch's ``(loss, gradients)`` as the backend's ``fit`` step
                         computes them, before its update: the gradients exactly as the
                         optimizer receives them (sparse ones stay sparse); the forward
                         pass's non-trainable updates are written to the model
``apply_gradients(optimizer, grads, variables)``
                         one optimizer update, applied as the backend's ``fit`` step applies it
``input_and_weight_gradients(layer, inputs, cotangent, training)``
                         the gradients of ``sum(outputs * cotangent)`` with respect to each
                         float leaf of ``inputs`` (None for integer leaves) and to each of
                         ``layer.trainable_variables``, by the framework's own autodiff
                         (``backendlab.testing``'s parity checks compare them across backends)
``profile_phases(model, loss_fn, optimizer, x, y, repeats)``
                         the median milliseconds of one step's forward pass, loss and
                         backward, and optimizer update, each timed alone the way the
                         backend runs it (``tune``'s per-step profile)
``check_devices(n)``     refuse more devices than the machine has
``data_parallel(n)``     set up the backend's own data-parallel engine on n devices and
                         return the scope in which the model is built and compiled
``join_processes(n)``    join the other processes of ``--processes n`` (each one host, with one
                         device) through the backend's own multi-host engine, and return the scope
                         in which the model is built and compiled
``process_batches(model, x, y, sample_weight, batch_size)``
                         ``fit``'s keyword arguments for this process's own share of every global
                         batch, in local batches of ``batch_size`` (global / n)
``replica_first_row(rows)``
                         this replica's first row in the global batch, for a random draw of ``rows``
                         rows made on its share (``backendlab.training.randomness`` counts a sample's
                         draws from it): 0 on one device and under JAX's global program
``random_kernel(threefry)``
                         ``threefry`` (portable randomness's generator, written in ``keras.ops``) as
                         the backend runs it fastest, the same bits: one XLA kernel on JAX and
                         TensorFlow, torch's own integer ops on PyTorch
``gather_shares(tree, shares)``
                         every process's share of a batch, in process order: the global batch
                         (torch's custom loop, for the compiled metrics)

Nothing outside ``backendlab/_impl`` imports a framework directly; it asks
``backendlab.backends.impl()`` for the module of the active backend.
"""
