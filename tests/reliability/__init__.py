"""Fault-injection tests of the reliability issue (kills, lost nodes, bad disks, bad input, exposure).

A package (unlike the other test directories) so that its Ray cluster, a package-scoped fixture,
is stopped before tests/sweeps starts its own: a process can be connected to one Ray at a time.
"""
