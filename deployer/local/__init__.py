"""The rendered app's vLLM command on this machine (serve --local), and smoke checks against a
running endpoint, here or on Modal."""
