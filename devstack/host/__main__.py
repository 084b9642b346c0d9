"""`python -m devstack.host`: run the local Functions host."""

from devstack.host.core import main

raise SystemExit(main())
