"""Deployment → build/<name>/app.py: decisions made in Python, laid out by the template, every
value entering the code as a Python literal."""
