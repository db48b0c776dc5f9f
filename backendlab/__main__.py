from backendlab.cli import main

raise SystemExit(main())
