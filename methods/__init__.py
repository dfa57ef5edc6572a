"""Unlearning methods, one file each; the file name is the registry key (see bench.registry.method).

Every module here is imported by :func:`bench.registry.load_methods`, which registers its methods.
"""
