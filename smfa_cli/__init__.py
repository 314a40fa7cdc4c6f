"""smfa_cli: the `smfa` command line, thin over the libraries."""
