"""Instances: separating touching objects with body/border/contact targets and watershed.

targets.py    instance labels → body, border, contact channels (the training target)
data.py       `data: {_target_: podium.tasks.instances.data.build_instance_datasets, …}`
watershed.py  probabilities → instance labels (seeded watershed, connected components)
metrics.py    object F1 at IoU ≥ 0.5 and DSB2018 AP; callbacks.py logs them in training
predict.py    `podium predict` writer: label maps, polygons, per-image F1 / AP
"""
