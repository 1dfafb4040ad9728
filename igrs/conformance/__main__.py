"""``python -m igrs.conformance ...``: the conformance commands without the main CLI."""

from igrs.conformance.cli import main

raise SystemExit(main())
