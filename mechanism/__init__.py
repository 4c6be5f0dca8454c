"""PIVOT-K incentive analysis and cartel Monte Carlo (docs/mechanism.md)."""
