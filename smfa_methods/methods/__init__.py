"""Built-in methods, each an ordinary plugin object registered by `smfa_methods.builtin`."""
