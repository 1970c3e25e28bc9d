"""Glance's task resource: what a client sees of background work it asked for (imports)."""
