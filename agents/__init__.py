"""Built-in agents; importing this package registers them. One algorithm per file, shared blocks beside them."""
