"""What the three Phoenix services truly share: settings loading, logging and problem responses.

Nothing here imports a service package or a database driver.
"""
