"""The studio's pages and JSON endpoints, one module per page."""
