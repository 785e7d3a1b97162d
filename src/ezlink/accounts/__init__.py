"""Accounts: issued API keys, model access, quotas, rate limits and usage.

Called by the API layer (``ezlink.api``); never imports it.
"""
