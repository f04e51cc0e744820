"""``python -m thinkrec``: the command-line interface."""

from thinkrec.cli import main

raise SystemExit(main())
