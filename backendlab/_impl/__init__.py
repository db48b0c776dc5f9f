"""One module per backend, each defining the same functions.

``devices()``            names of the devices the framework sees
``sync(tree)``           wait until every array in ``tree`` is computed
``refuses_nan(exc)``     whether ``exc`` is the framework refusing a NaN where others compute
                         one (torch's binary cross-entropy raises on NaN predictions), so
                         training reports a NaN loss there as on every other backend
``make_train_step(model, loss_fn, optimizer)``
                         a function ``(x, y) -> (loss, y_pred)`` that takes one optimizer
                         step with the framework's own autodiff, compiled where the
                         framework compiles, on the model's and optimizer's real Keras state;
                         under torchrun it trains its rank's share of the global batch
``check_devices(n)``     refuse more devices than the machine has
``data_parallel(n)``     set up the backend's own data-parallel engine on n devices and
                         return the scope in which the model is built and compiled

Nothing outside ``backendlab/_impl`` imports a framework directly; it asks
``backendlab.backends.impl()`` for the module of the active backend.
"""
