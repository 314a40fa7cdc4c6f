"""What exists for tests, the demo and the quick reproduction: tiny random models built offline."""
