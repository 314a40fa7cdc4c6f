"""smfa_methods: unlearning methods as pluggy plugins over one training loop."""
