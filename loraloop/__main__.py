"""``python -m loraloop``: the same CLI as the ``loraloop`` command."""

from loraloop.cli import main

main()
