"""smfa_eval: the S-MLLMUn-style benchmark (data, generation, metrics, judges, reports)."""
