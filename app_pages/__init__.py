"""One module per page; widgets only. Every admin page calls require_admin() itself."""
