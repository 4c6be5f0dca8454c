"""Campaigns: many independent simulation tasks on local processes or a Dask cluster."""
