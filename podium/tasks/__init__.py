"""Tasks beyond plain segmentation, one folder each; segmentation is the core of the package."""
