"""``python -m lesionlib``: see ``lesionlib.cli``."""

from lesionlib.cli import main

raise SystemExit(main())
