"""The fleet dashboard: pages and SVG charts rendered by the gateway (``GET /``)."""
