"""What a checkout would deploy (desired), what runs on Modal (state, platform), the difference
(plan), and carrying it out with smoke tests and rollback (apply)."""
