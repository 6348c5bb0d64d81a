"""Review of results: the self-contained HTML report and comparisons across runs and machines."""
