"""`python -m devstack.simulator [--port 8443] [--state-dir .devstack]`: the simulator in the
foreground until Ctrl-C."""

from devstack.simulator.server import main

raise SystemExit(main())
