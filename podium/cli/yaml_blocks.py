"""Setting one top-level block of a YAML file while keeping the rest of its text and comments.

    text, data = read_inference_yaml(Path("infer.yml"))
    text, kept = replace_yaml_block(text, "postprocess", {"threshold": 0.45}, "tuned by …")

PyYAML loads and dumps data, not text: a round trip drops every comment. Inference configs are
written and commented by hand, so `podium tune-postprocess` edits their text instead: the
block's values where they stand, else the block's lines, and a whole re-dump only when neither
parses back to the expected data (`kept` is then False, for the command to say so). This is
text editing with no tuning in it, so it sits apart from the command, which parses arguments
and calls it. A comment under the key that starts with TUNED (an earlier tuning's) is replaced,
not stacked.
"""

from pathlib import Path
from typing import Optional

import yaml

from podium.errors import PodiumError

__all__ = ["TUNED", "read_inference_yaml", "replace_yaml_block"]

TUNED = "tuned by podium tune-postprocess"


def read_inference_yaml(path: Path):
    """(text, mapping) of the inference YAML at `path`: the text to edit, the data to read."""
    if not path.is_file():
        raise PodiumError(f"inference config {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PodiumError(
            f"cannot parse inference config {path}: {str(error).splitlines()[0]}"
        ) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise PodiumError(
            f"inference config {path} must be a YAML mapping, got {type(data).__name__}"
        )
    return text, data


def replace_yaml_block(text: str, key: str, block: dict, comment: Optional[str] = None):
    """(new text, comments kept?): `text` with its top-level `key:` set to `block`.

    Tried in turn, each checked by parsing the result: (1) the values of the block's keys are
    replaced where they stand, so every comment survives, those inside the block too; (2) the
    block's lines are replaced (or appended), so comments outside it survive; (3) PyYAML
    re-dumps the whole file (a flow-style top level, anchors into the block), dropping comments.
    `comment` goes on a line of its own under `key:`, replacing the one a previous tuning left.
    """
    data = yaml.safe_load(text) or {}
    expected = dict(data, **{key: block})
    for edit in (_edit_values, _replace_lines):
        try:
            edited = edit(text, key, block, comment)
        except yaml.YAMLError:
            edited = None
        if edited is not None and yaml.safe_load(edited) == expected:
            return edited, True
    return _dump(expected), False


class _Dumper(yaml.SafeDumper):
    """Block mappings, one-line lists: `threshold: [0.4, 0.6]`."""


_Dumper.add_representer(
    list,
    lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True),
)


def _dump(data) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1 << 16,
        allow_unicode=True,
    )


def _flow(value) -> str:
    """A value as YAML text on one line: 0.45, [0.4, 0.6], false."""
    return _dump({"v": value})[len("v: ") :].strip()


def _top_level(text: str, key: str):
    """(lines, key node, value node) of the top-level `key` (nodes None if absent); None if the
    top level is not a block mapping."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = text.splitlines()
    if root is None:
        return lines, None, None
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    for key_node, value_node in root.value:
        if (
            isinstance(key_node, yaml.ScalarNode)
            and key_node.value == key
            and key_node.start_mark.column == 0
        ):
            return lines, key_node, value_node
    return lines, None, None


def _edit_values(text: str, key: str, block: dict, comment: Optional[str]) -> Optional[str]:
    """Each key's one-line value replaced in place; absent keys added after the last one."""
    found = _top_level(text, key)
    if found is None or found[1] is None:
        return None
    lines, key_node, value_node = found
    if (
        not isinstance(value_node, yaml.MappingNode)
        or value_node.flow_style
        or not value_node.value
    ):
        return None
    items = {k.value: (k, v) for k, v in value_node.value if isinstance(k, yaml.ScalarNode)}
    indent = value_node.value[0][0].start_mark.column
    last = max(v.end_mark.line for _, v in value_node.value)
    added = []
    for name, value in block.items():
        if name not in items:
            added.append(" " * indent + f"{name}: {_flow(value)}")
            continue
        k, v = items[name]
        line = k.start_mark.line
        if v.start_mark.line != line or v.end_mark.line != line:
            return None  # a value over several lines: replace the whole block instead
        lines[line] = (
            lines[line][: v.start_mark.column] + _flow(value) + lines[line][v.end_mark.column :]
        )
    lines[last + 1 : last + 1] = added
    if comment:
        first = key_node.start_mark.line + 1
        tuned = first < len(lines) and lines[first].strip().startswith(f"# {TUNED}")
        lines[first : first + tuned] = [" " * indent + f"# {comment}"]
    return "\n".join(lines) + "\n"


def _replace_lines(text: str, key: str, block: dict, comment: Optional[str]) -> Optional[str]:
    """The block's lines replaced by freshly dumped ones (appended if the key is absent)."""
    found = _top_level(text, key)
    if found is None:
        return None
    lines, key_node, value_node = found
    head = [f"  # {comment}"] if comment else []
    new = [f"{key}:"] + head + [f"  {line}" for line in _dump(block).splitlines()]
    if key_node is None:
        tail = [""] if lines and lines[-1].strip() else []
        return "\n".join(lines + tail + new) + "\n"
    start = key_node.start_mark.line
    end = value_node.end_mark.line + (1 if value_node.end_mark.column > 0 else 0)
    while end > start + 1 and (
        not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")
    ):
        end -= 1  # blank lines and comments before the next key belong to it
    return "\n".join(lines[:start] + new + lines[end:]) + "\n"
