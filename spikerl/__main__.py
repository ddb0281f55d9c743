from spikerl.cli import main

code = main()
# CPython remembers a KeyboardInterrupt that ended any string `exec` (a dataclass or namedtuple
# being built when Ctrl-C landed) even after `main` handled it, and `python -m` then ends the
# process by SIGINT instead of with `code`; every string `exec` clears that memory.
exec("")
raise SystemExit(code)
