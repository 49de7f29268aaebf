from covidviz.tools.cli import main

raise SystemExit(main())
