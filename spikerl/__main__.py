"""``python -m spikerl``: the command line (``spikerl.cli.main``); a Ctrl-C while it starts up ends in one line, exit 130."""

import sys

try:
    from spikerl.cli import main
except KeyboardInterrupt:
    print("spikerl: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
