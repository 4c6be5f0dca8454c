"""Operator and benchmark tools that drive nodes from outside: the testnet launcher, load
generators, the Sedna sender, benchmarks and the in-process demo.

Nothing in the node's own modules imports this package; the tools reach a node only through
its RPC, its config files and (read-only) its database.
"""
