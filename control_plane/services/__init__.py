"""Services: one job each, on stores and clients, never the aiohttp application."""
