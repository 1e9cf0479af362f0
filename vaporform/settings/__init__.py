"""The settings of each domain, each with the reading of its environment variables;
vaporform/config.py puts them together into one `Config`."""
