"""``python -m labelwise.cli``: the ``labelwise`` command, for a process started from Python
(``labelwise serve`` and the tests start servers this way)."""

from labelwise.cli import main

main()
