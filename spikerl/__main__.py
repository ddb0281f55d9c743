from spikerl.cli import main

raise SystemExit(main())
