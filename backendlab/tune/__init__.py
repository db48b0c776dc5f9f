"""``backendlab tune``: the fastest settings for a model on each backend, each proven to train the same."""

from backendlab import lazy

lazy.callable_package(__name__, "backendlab.api:tune")  # backendlab.tune(...) runs the command
