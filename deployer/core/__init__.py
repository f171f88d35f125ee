"""What every stage shares: diagnostics and the rule registry, paths inside the repository, run
budgets, limits, one HTTP client, patterns from untrusted text, tables, text helpers."""
