"""Versions of the reference tools, for the provenance of the generated
reports (docs/benchmarks/*.md): each reference script adds
`"versions": versions(...)` to the JSON object it prints, a list of
[name, version] pairs, Python first. A package that cannot be imported is
listed as "not installed".
"""
import importlib
import platform


def versions(*packages):
    """[["Python", "3.11.7"], [name, version], ...] for each (name, module)
    pair of `packages`, e.g. ("Pillow", "PIL")."""
    out = [["Python", platform.python_version()]]
    for name, module in packages:
        try:
            version = getattr(importlib.import_module(module), "__version__", "unknown")
        except ImportError:
            version = "not installed"
        out.append([name, str(version)])
    return out
