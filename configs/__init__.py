"""Catalog data shipped with APEX (YAML only): models/, hardware/, fabrics/, clusters/, workloads/, examples/."""
