"""The closed-loop demo's driver: traffic, labelling, cycles, rollout, report (CLI layer).

It composes every layer inside the embedded stack, so it lives next to the CLI,
the only place allowed to import them all. The pure scenario and rules are in
:mod:`loraloop.simulation`.
"""
