from covidviz.cli import main

raise SystemExit(main())
