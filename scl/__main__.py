from scl.cli import main

raise SystemExit(main())
