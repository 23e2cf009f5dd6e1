"""`vaar serve`: an aiohttp service that queues uploaded tables for analysis in supervised R
worker processes and serves the reports. R never runs in the server process."""
