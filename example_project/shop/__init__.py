"""The shop: orders, and the workflow that fulfils them."""
