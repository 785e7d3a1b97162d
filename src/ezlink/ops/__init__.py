"""Operating ezlink: metrics, logs, model loading and the startup banner.

Nothing here speaks HTTP; the routes and middleware that expose it live in
``ezlink.api``.
"""
