"""`python -m fdsl_app`: the `fdsl_app` command line."""

from fdsl_app.cli import main

raise SystemExit(main())
