"""``backendlab tune``: the fastest settings for a model on each backend, each proven to train the same."""
