"""Stores: the only code that names SQL queries, one per aggregate."""
