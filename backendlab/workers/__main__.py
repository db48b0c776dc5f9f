"""``python -m backendlab.workers``: a worker (:func:`backendlab.workers.serve.main`)."""

from backendlab.workers.serve import main

raise SystemExit(main())
