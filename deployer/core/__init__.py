"""What every stage shares: diagnostics, paths inside the repository, run budgets, limits,
the HTTP opener that keeps credentials on their host, patterns from untrusted text."""
