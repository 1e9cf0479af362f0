"""The bodies of the `vaporform` commands; vaporform/cli.py parses the arguments and picks one."""
