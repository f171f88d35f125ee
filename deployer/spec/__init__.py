"""A deployment file becomes data: YAML with positions (load), the JSON Schema (schema), and
frozen dataclasses every later stage works from (model)."""
