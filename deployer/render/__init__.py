"""Deployment → build/<name>/app.py: decisions made in Python, laid out by the template, every
value entering the code as a Python literal.

- `context`: every decision the template lays out, as data
- `literals`: Python literals and comments in the rendered code
- `templates`: finding and running the sandboxed Jinja2 template
- `app`: `render()`, which ties them together, and the code hash plan and apply compare
- `output`: the build folder, written atomically
"""
