"""`python -m crosscast` is the `crosscast` command."""

from crosscast.cli import main

raise SystemExit(main())
