"""The `deployer` command: argument parsing, one module per command group, exit codes."""
